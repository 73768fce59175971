-- gather_parity_spec.lua: corio.gather (functions and Tasks), corio.map and
-- corio.first checked against what asyncio.gather / TaskGroup / wait
-- (FIRST_COMPLETED) and trio/anyio users expect, and against SPEC §1 and
-- docs/api.md ("Many at once"). Where corio differs on purpose, the test
-- names the difference (docs/coming-from-python.md lists them).

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch, new_log = helpers.catch, helpers.new_log
local testing = require("corio.testing")

-- Anything that could hang runs under a generous deadline.
local function guarded(fn, ...) return corio.timeout(20, fn, ...) end

-- The tasks alive besides the caller's own chain (root and caller).
local function others()
  local me, n = corio.current(), 0
  for _, t in ipairs(corio.tasks()) do
    if t.task ~= me and t.status ~= "done" and t.parent ~= nil then n = n + 1 end
  end
  return n
end

local function live_count() return #corio.tasks() end

describe("gather parity: results", function()
  it("results are in input order whatever the completion order", function()
    testing.autojump(function()
      local r = corio.gather({
        function() corio.sleep(3); return 1 end,
        function() corio.sleep(1); return 2 end,
        function() return 3 end,
        function() corio.sleep(2); return 4 end,
      })
      assert.same({ 1, 2, 3, 4 }, r)
    end)
  end)

  it("only the first value of each is kept; nil keeps its slot", function()
    local r = corio.gather({
      function() return "a", "b", "c" end,
      function() return nil, "dropped" end,
      function() end,
      function() return false end,
    })
    assert.equal("a", r[1])
    assert.is_nil(r[2])
    assert.is_nil(r[3])
    assert.equal(false, r[4])
    assert.is_nil(r[5])
  end)

  it("an empty list returns {} (asyncio.gather() returns []), and {} errors", function()
    assert.same({}, corio.gather({}))
    local r, e = corio.gather({}, { return_errors = true })
    assert.same({}, r)
    assert.same({}, e)
    assert.same({}, corio.map({}, function() error("never") end))
  end)
end)

describe("gather parity: bad lists start nothing", function()
  local started
  local function f() started = started + 1 end
  before_each(function() started = 0 end)

  local function holey()
    local t = {}
    t[1] = f; t[3] = f -- # may be 1 or 3: Lua leaves it open
    return t
  end

  for _, name in ipairs({ "gather", "first" }) do
    it(name .. ": a hole names the index", function()
      local err = catch(corio[name], holey())
      assert.matches("bad argument #1 to '" .. name .. "' (element 2 is a nil", err, 1, true)
      err = catch(corio[name], { f, nil, f })
      assert.matches("bad argument #1 to '" .. name .. "' (element 2 is a nil", err, 1, true)
      corio.sleep(0)
      assert.equal(0, started)
    end)

    it(name .. ": a table with keys other than 1..n is refused", function()
      local err = catch(corio[name], { a = f })
      assert.matches("bad argument #1 to '" .. name .. "' (key 'a' is not an array index", err, 1, true)
      err = catch(corio[name], { f, [2.5] = f })
      assert.matches("(key 2.5 is not an array index", err, 1, true)
      corio.sleep(0)
      assert.equal(0, started)
    end)

    it(name .. ": a non-function entry names its index and type", function()
      local err = catch(corio[name], { f, f, 42 })
      assert.matches("bad argument #1 to '" .. name
        .. "' (element 3 is a number, expected a function or a Task)", err, 1, true)
      corio.sleep(0)
      assert.equal(0, started)
    end)
  end

  it("map: a hole or a key beyond the array is refused, nothing called", function()
    local items = {}
    items[1] = 1; items[4] = 4
    local err = catch(corio.map, items, f)
    assert.matches("bad argument #1 to 'map' (element ", err, 1, true)
    err = catch(corio.map, { x = 1 }, f)
    assert.matches("bad argument #1 to 'map' (key 'x' is not an array index", err, 1, true)
    err = catch(corio.map, { 1, nil, 3 }, f)
    assert.matches("bad argument #1 to 'map' (element 2 is a nil", err, 1, true)
    -- a hole inside #items and another key: as many keys as #items (with
    -- LuaJIT, #items is 4 here)
    items = { 1, 2, 3, 4, x = true }
    items[2] = nil
    err = catch(corio.map, items, f)
    assert.matches("bad argument #1 to 'map' (", err, 1, true)
    err = catch(corio.map, { [0] = 0, 1 }, f)
    assert.matches("bad argument #1 to 'map' (key 0 is not an array index", err, 1, true)
    corio.sleep(0)
    assert.equal(0, started)
  end)

  it("map takes an array, not an iterator (no async generators)", function()
    local err = catch(corio.map, ipairs({ 1, 2 }), f)
    assert.matches("bad argument #1 to 'map' (table expected, got function)", err, 1, true)
  end)
end)

describe("gather parity: errors", function()
  it("the first error cancels the others promptly; err.errors lists the real ones", function()
    guarded(function()
      local cancelled, t0 = 0, corio.now()
      local err = catch(corio.gather, {
        function() corio.sleep(0.01); error("first", 0) end,
        function()
          corio.defer(function() cancelled = cancelled + 1 end)
          corio.sleep(30)
        end,
        function()
          corio.defer(function() cancelled = cancelled + 1 end)
          corio.sleep(30)
        end,
      })
      assert.equal("first", err.value)
      assert.equal(1, #err.errors)
      assert.equal(2, cancelled) -- ended before gather raised
      assert.is_true(corio.now() - t0 < 10)
      assert.equal(0, others())
    end)
  end)

  it("two real errors: the first raised, both in err.errors, the cancels not", function()
    local err = catch(corio.gather, {
      function() error("a", 0) end,
      function() corio.sleep(5) end,
      function()
        corio.shield(function() corio.sleep(0.01) end)
        error("c", 0)
      end,
    })
    assert.equal("a", err.value)
    assert.equal(2, #err.errors)
    assert.equal("a", err.errors[1].value)
    assert.equal("c", err.errors[2].value)
  end)

  it("an error(nil) is not lost", function()
    local err = catch(corio.gather, { function() error(nil) end })
    assert.equal("error", err.kind)
    local r, errs = corio.gather({ function() error(nil) end, function() return 1 end },
      { return_errors = true })
    assert.equal(1, r[2])
    assert.equal("error", errs[1].kind)
  end)

  it("return_errors: errors in place, no sibling cancelled", function()
    testing.autojump(function()
      local r, errs = corio.gather({
        function() error("x", 0) end,
        function() corio.sleep(1); return "slow" end,
        function() corio.sleep(0.5); error(corio.new_error("mine", "m")) end,
      }, { return_errors = true })
      assert.same({ [2] = "slow" }, r)
      assert.equal("x", errs[1].value)
      assert.is_nil(errs[2])
      assert.equal("mine", errs[3].kind)
    end)
  end)

  it("return_errors: a cancel of the gather itself is raised, not collected", function()
    testing.autojump(function() -- virtual clock: no load can reorder it
      local ok = corio.move_on_after(0.05, corio.gather, {
        function() corio.sleep(30) end,
      }, { return_errors = true })
      assert.is_false(ok)
      assert.equal(0, others())
    end)
  end)

  it("return_errors: a cleanup error while the gather is cancelled is raised,"
    .. " the gather does not return as if not cancelled", function()
    testing.autojump(function()
      for _, call in ipairs({
        function(f) return corio.gather({ f }, { return_errors = true }) end,
        function(f) return corio.map({ 1 }, f, { return_errors = true }) end,
        function(f) return corio.map({ 1, 2 }, f, { return_errors = true, limit = 1 }) end,
      }) do
        local function f()
          corio.defer(function() error("cleanup", 0) end)
          corio.sleep(30)
        end
        local ok, a = pcall(corio.move_on_after, 1, call, f)
        assert.is_false(ok, "move_on_after returned " .. tostring(a))
        assert.equal("cleanup", a.value)
        assert.equal(0, others())
      end
    end)
  end)

  it("a child's traceback names the child function and the gather call site (rule 9)", function()
    local function child_fn_here() corio.sleep(0); error("boom") end
    local line = debug.getinfo(1, "l").currentline
    local ok, err = pcall(corio.gather, { child_fn_here })
    assert.is_false(ok)
    assert.matches("gather_parity_spec.lua:" .. (line - 1) .. ":", err.traceback, 1, true) -- error()
    -- the frame names the function by its definition, not by corio's local
    assert.matches("gather_parity_spec.lua:" .. (line - 1) .. ": in function <[^\n]*"
      .. "gather_parity_spec.lua:" .. (line - 1) .. ">", err.traceback)
    assert.matches("spawned at [^\n]*gather_parity_spec.lua:" .. (line + 1) .. "%)", err.traceback)
    line = debug.getinfo(1, "l").currentline
    ok, err = pcall(corio.map, { 1 }, function() error("m", 0) end, { limit = 1 })
    assert.is_false(ok)
    assert.matches("gather_parity_spec.lua:" .. (line + 1) .. ": in function <", err.traceback, 1, true)
    -- a worker that runs several calls (limit < #items), a string and a
    -- corio error
    for _, mk in ipairs({ function() return "m" end, function() return corio.new_error("k", "m") end }) do
      line = debug.getinfo(1, "l").currentline
      ok, err = pcall(corio.map, { 1, 2, 3 }, function() error(mk(), 0) end, { limit = 2 })
      assert.is_false(ok)
      assert.matches("gather_parity_spec.lua:" .. (line + 1) .. ": in function <", err.traceback, 1, true)
      assert.matches("spawned at [^\n]*gather_parity_spec.lua:" .. (line + 1) .. "%)", err.traceback)
    end
    line = debug.getinfo(1, "l").currentline
    ok, err = pcall(corio.map, { 1 }, function() error("m", 0) end)
    assert.is_false(ok)
    assert.matches("gather_parity_spec.lua:" .. (line + 1) .. ": in function <", err.traceback, 1, true)
    line = debug.getinfo(1, "l").currentline
    ok, err = pcall(corio.first, { function() error("m", 0) end })
    assert.is_false(ok)
    assert.matches("gather_parity_spec.lua:" .. (line + 1) .. ": in function <", err.traceback, 1, true)
    assert.matches("spawned at [^\n]*gather_parity_spec.lua:" .. (line + 1) .. "%)", err.traceback)
  end)

  it("an error kept by return_errors or first has the child's spawn site too, once", function()
    local line = debug.getinfo(1, "l").currentline
    local _, errs = corio.gather({ function() error("g", 0) end }, { return_errors = true })
    local _, merrs = corio.map({ 1, 2 }, function() error("m", 0) end,
      { return_errors = true, limit = 1 })
    local _, ferr = pcall(corio.first, { function() error(corio.new_error("k", "f")) end })
    for _, e in ipairs({ errs[1], merrs[1], merrs[2], ferr }) do
      local site = e == ferr and line + 4 or e == errs[1] and line + 1 or line + 2
      local _, count = e.traceback:gsub("spawned at", "")
      assert.equal(1, count, e.traceback)
      assert.matches("spawned at [^\n]*gather_parity_spec.lua:" .. site .. "%)", e.traceback)
    end
  end)
end)

describe("gather parity: Tasks", function()
  it("joins ended Tasks: a result, an error, a Cancelled", function()
    local done, failed, cancelled
    corio.scope(function(outer)
      done = outer:spawn(function() return "d", "x" end)
    end)
    local ok = pcall(corio.scope, function(s)
      failed = s:spawn(function() error("f", 0) end)
    end)
    assert.is_false(ok)
    guarded(function()
      local t = corio.spawn(function() corio.sleep(30) end)
      corio.yield()
      t:cancel()
      cancelled = t
      corio.yield()
      assert.equal("cancelled", cancelled:status())
      assert.equal("failed", failed:status())
      local r, errs = corio.gather({ done, failed, cancelled, done },
        { return_errors = true })
      assert.same({ "d", nil, nil, "d" }, r)
      assert.equal("f", errs[2].value)
      assert.equal("cancelled", errs[3].kind)
      assert.is_nil(errs[4])
      -- without return_errors the cancelled Task fails the gather (as
      -- asyncio.gather raises CancelledError for a cancelled awaitable)
      local err = catch(corio.gather, { done, cancelled })
      assert.equal("cancelled", err.kind)
      -- the caller is not cancelled by that
      corio.sleep(0)
    end)
  end)

  it("first: a Task that already ended wins; a failed or cancelled one does not", function()
    guarded(function()
      local done, failed
      corio.scope(function(s) done = s:spawn(function() return "d" end) end)
      pcall(corio.scope, function(s) failed = s:spawn(function() error("f", 0) end) end)
      local v, i = corio.first({ failed, function() corio.sleep(30) end, done })
      assert.same({ "d", 3 }, { v, i })
      local err = catch(corio.first, { failed })
      assert.equal("f", err.value)
      local t = corio.spawn(function() corio.sleep(30) end)
      corio.yield()
      t:cancel()
      err = catch(corio.first, { t })
      assert.equal("cancelled", err.kind)
      -- that Cancelled is a failure of first's, not a cancel of the caller
      corio.sleep(0)
    end)
  end)

  it("the same Task twice, and a Task of another scope, are joined", function()
    guarded(function()
      local log, add = new_log()
      corio.scope(function(s)
        local t = s:spawn(function() corio.sleep(0.01); add("t"); return 7 end)
        local r = corio.scope(function()
          return corio.gather({ t, t, function() return 1 end })
        end)
        assert.same({ 7, 7, 1 }, r)
      end)
      assert.same({ "t" }, log)
    end)
  end)

  it("the caller itself in the list raises at once instead of hanging", function()
    guarded(function()
      local err = catch(corio.gather, { corio.current() })
      assert.matches("cannot join a task it runs inside", tostring(err), 1, true)
      err = catch(corio.first, { corio.current() })
      assert.matches("cannot join a task it runs inside", tostring(err), 1, true)
    end)
  end)

  it("cancelling the caller: function children are cancelled, given Tasks go on"
    .. " (asyncio.gather would cancel them; documented difference)", function()
    testing.autojump(function()
      local fn_cancelled = false
      local t = corio.spawn(function() corio.sleep(0.1); return "task" end)
      local ok = corio.move_on_after(0.02, corio.gather, {
        function()
          corio.defer(function() fn_cancelled = true end)
          corio.sleep(30)
        end,
        t,
      })
      assert.is_false(ok)
      assert.is_true(fn_cancelled)
      assert.equal("running", t:status())
      assert.equal(1, others()) -- the Task, and nothing of the gather's
      assert.equal("task", t:join())
      assert.equal(0, others())
    end)
  end)
end)

describe("gather parity: map", function()
  it("an outer cancel stops the workers before their next item, even when the calls catch their Cancelled", function()
    -- trio's workers pulling from a channel stop at the next receive; here
    -- each worker checks before it takes another item (it used to go on
    -- through every remaining item, each cancelled at its first sleep)
    testing.autojump(function()
      local started = 0
      local items = {}
      for i = 1, 100 do items[i] = i end
      local finished = corio.move_on_after(0.05, function()
        corio.map(items, function(x)
          started = started + 1
          pcall(corio.sleep, 0.02)   -- swallows the Cancelled
          return x
        end, { limit = 2 })
      end)
      assert.is_false(finished)
      -- 0.05 s: two rounds of two done, the third round cut; no item after
      assert.equal(6, started)
    end)
  end)

  it("limit = 1 runs one after another, in order", function()
    guarded(function()
      local log, add = new_log()
      local active, max_active = 0, 0
      local r = corio.map({ 3, 1, 2 }, function(x, i)
        active = active + 1
        max_active = math.max(max_active, active)
        add(i)
        corio.sleep(x * 0.002)
        active = active - 1
        return x * 10
      end, { limit = 1 })
      assert.same({ 30, 10, 20 }, r)
      assert.same({ 1, 2, 3 }, log)
      assert.equal(1, max_active)
    end)
  end)

  it("a limit larger than the list, or math.huge, runs them all at once", function()
    testing.autojump(function()
      for _, limit in ipairs({ 100, math.huge }) do
        local t0 = corio.now()
        local r = corio.map({ 1, 1, 1 }, function(x, i) corio.sleep(x); return i end,
          { limit = limit })
        assert.same({ 1, 2, 3 }, r)
        assert.is_true(corio.now() - t0 < 1.5)
      end
    end)
  end)

  it("limit 0, negative, fractional, NaN or non-number raises, nothing called", function()
    local called = 0
    local function f() called = called + 1 end
    for _, v in ipairs({ 0, -2, 0.5, 2.5, 0 / 0, "2", true, {} }) do
      local err = catch(corio.map, { 1, 2 }, f, { limit = v })
      assert.matches("bad argument #3 to 'map' (limit must be a positive integer, got", err, 1, true)
    end
    corio.sleep(0)
    assert.equal(0, called)
  end)

  it("limit = false is the same as no limit (a Lua `cond and n` idiom)", function()
    testing.autojump(function()
      local t0 = corio.now()
      corio.map({ 1, 1 }, function(x) corio.sleep(x) end, { limit = false })
      assert.is_true(corio.now() - t0 < 1.5)
    end)
  end)

  it("a huge list keeps at most limit tasks alive", function()
    guarded(function()
      local base = live_count()
      local max_live = 0
      local items = {}
      for i = 1, 5000 do items[i] = i end
      local r = corio.map(items, function(x)
        if x % 97 == 0 then max_live = math.max(max_live, live_count() - base) end
        corio.yield()
        return x + 1
      end, { limit = 3 })
      assert.equal(5000, #r)
      assert.equal(5001, r[5000])
      assert.is_true(max_live <= 3, "live tasks: " .. max_live)
      assert.is_true(max_live >= 1)
      assert.equal(base, live_count())
    end)
  end)

  it("return_errors with a limit: errors in place, the rest still run", function()
    guarded(function()
      local r, errs = corio.map({ 1, 2, 3, 4, 5 }, function(x)
        corio.yield()
        if x % 2 == 0 then error("even " .. x, 0) end
        return x
      end, { limit = 2, return_errors = true })
      assert.same({ [1] = 1, [3] = 3, [5] = 5 }, r)
      assert.equal("even 2", errs[2].value)
      assert.equal("even 4", errs[4].value)
      assert.is_nil(errs[1])
    end)
  end)

  it("an error with a limit starts no more items", function()
    guarded(function()
      local called = 0
      local err = catch(corio.map, { 1, 2, 3, 4, 5, 6 }, function(x)
        called = called + 1
        corio.yield()
        if x == 2 then error("two", 0) end
      end, { limit = 2 })
      assert.equal("two", err.value)
      assert.is_true(called <= 3, "called " .. called)
      assert.equal(0, others())
    end)
  end)
end)

describe("gather parity: first", function()
  it("returns the first success; losers cancelled and their defers ran before", function()
    guarded(function()
      local loser_cleanup = 0
      local v, i = corio.first({
        function()
          corio.defer(function() loser_cleanup = loser_cleanup + 1 end)
          corio.sleep(30)
        end,
        function() corio.sleep(0.01); return "win", "extra" end,
        function()
          corio.defer(function() loser_cleanup = loser_cleanup + 1 end)
          corio.sleep(30)
        end,
      })
      assert.equal("win", v)
      assert.equal(2, i)
      assert.equal(2, loser_cleanup)
      assert.equal(0, others())
    end)
  end)

  it("a function whose cleanup fails has failed: it neither wins nor ends the race", function()
    guarded(function()
      local v, i = corio.first({
        function() corio.defer(function() error("cleanup", 0) end); return "dirty" end,
        function() corio.sleep(0.01); return "clean" end,
      })
      assert.same({ "clean", 2 }, { v, i })
      v, i = corio.first({
        function() corio.defer(function() error("cleanup", 0) end); error("body", 0) end,
        function() corio.sleep(0.01); return "clean" end,
      })
      assert.same({ "clean", 2 }, { v, i })
      local err = catch(corio.first, {
        function() corio.defer(function() error("cleanup", 0) end); return 1 end,
      })
      assert.equal("cleanup", err.value)
    end)
  end)

  it("a function returning nil (or nothing) is a success", function()
    guarded(function()
      local v, i = corio.first({
        function() corio.sleep(30) end,
        function() end,
      })
      assert.is_nil(v)
      assert.equal(2, i)
    end)
  end)

  it("failures do not win; all fail -> first error in time, errors in order", function()
    guarded(function()
      local v, i = corio.first({
        function() error("no", 0) end,
        function() corio.sleep(0.01); return "yes" end,
      })
      assert.same({ "yes", 2 }, { v, i })
      local err = catch(corio.first, {
        function() corio.sleep(0.02); error("late", 0) end,
        function() error("early", 0) end,
      })
      assert.equal("early", err.value)
      assert.equal(2, #err.errors)
      assert.equal("early", err.errors[1].value)
      assert.equal("late", err.errors[2].value)
    end)
  end)

  it("all fail: the errors a failure already lists are kept (as a scope keeps them)", function()
    guarded(function()
      local err = catch(corio.first, {
        function()
          corio.gather({ function() error("A", 0) end, function() error("B", 0) end })
        end,
        function() corio.sleep(0.01); error("G", 0) end,
      })
      assert.equal("A", err.value)
      local seen = {}
      for k, e in ipairs(err.errors) do seen[k] = e.value end
      assert.same({ "A", "B", "G" }, seen)
    end)
  end)

  it("all fail: a Task given twice lists its error once", function()
    local t
    pcall(corio.scope, function(s) t = s:spawn(function() error("once", 0) end) end)
    assert.equal("failed", t:status())
    local err = catch(corio.first, { t, t })
    assert.equal("once", err.value)
    assert.equal(1, #err.errors)
  end)

  it("first of an empty list raises (asyncio.wait of an empty set raises too)", function()
    local err = catch(corio.first, {})
    assert.matches("bad argument #1 to 'first' (empty list)", err, 1, true)
  end)

  it("an outer cancel while first waits leaves no task", function()
    testing.autojump(function() -- virtual clock: no load can reorder it
      local ok = corio.move_on_after(0.02, corio.first, {
        function() corio.sleep(30) end,
        function() corio.sleep(30) end,
      })
      assert.is_false(ok)
      assert.equal(0, others())
    end)
  end)
end)

describe("gather parity: nesting and deadlines", function()
  it("a deadline cuts nested gathers, maps and firsts; no task is left", function()
    testing.autojump(function() -- virtual clock: no load can reorder it
      local cleanups = 0
      local function leaf()
        corio.defer(function() cleanups = cleanups + 1 end)
        corio.sleep(30)
      end
      local t0 = corio.now()
      local err = catch(corio.timeout, 0.05, corio.gather, {
        function()
          return corio.gather({ leaf, function() return corio.map({ 1, 2 }, leaf, { limit = 1 }) end })
        end,
        function() return corio.first({ leaf, leaf }) end,
        leaf,
      })
      assert.equal("timeout", err.kind)
      assert.equal(5, cleanups) -- leaf, map's one running call, first's two, leaf
      assert.is_true(corio.now() - t0 < 10)
      assert.equal(0, others())
    end)
  end)

  it("return_errors inside a timed-out gather does not swallow the timeout", function()
    testing.autojump(function() -- virtual clock: no load can reorder it
      local err = catch(corio.timeout, 0.02, function()
        return corio.gather({
          function() return corio.gather({ function() corio.sleep(30) end },
            { return_errors = true }) end,
        }, { return_errors = true })
      end)
      assert.equal("timeout", err.kind)
      assert.equal(0, others())
    end)
  end)
end)
