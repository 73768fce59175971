-- errors_spec.lua: SPEC §1 error objects (rule 10), tracebacks (rule 9),
-- bad arguments ("bad argument #1 to 'sleep'" wording) and corio calls
-- made where a task cannot suspend (inside a C function's callback).
-- Deadlock errors (rule 14) are checked from the CLI in tests/cli/.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch

local function cancelled_error()
  local err
  corio.scope(function(s)
    s:cancel()
    local ok, e = pcall(corio.sleep, 1)
    assert(not ok)
    err = e
  end)
  return err
end

local function timeout_error()
  local ok, e = pcall(corio.timeout, 0, corio.yield)
  assert(not ok)
  return e
end

local function assert_error_object(err, kind)
  assert.equal("table", type(err))
  assert.equal(kind, err.kind)
  assert.equal("string", type(err.message))
  assert.equal("string", type(err.traceback))
  assert.equal("table", type(err.errors))
  local mt = getmetatable(err)
  assert.is_not_nil(mt, "error object has no metatable")
  assert.equal("function", type(mt.__tostring))
  local s = tostring(err)
  assert.truthy(s:find(kind, 1, true), "tostring lacks the kind: " .. s)
  if #err.message > 0 then
    assert.truthy(s:find(err.message, 1, true),
      "tostring lacks the message: " .. s)
  end
end

describe("rule 10: error objects", function()
  it("rule 10: corio.Cancelled and corio.TimeoutError are classes with kinds",
    function()
      assert.equal("table", type(corio.Cancelled))
      assert.equal("cancelled", corio.Cancelled.kind)
      assert.equal("table", type(corio.TimeoutError))
      assert.equal("timeout", corio.TimeoutError.kind)
    end)

  it("rule 10: a Cancelled error has kind, message, traceback, errors, __tostring",
    function()
      local err = cancelled_error()
      assert_error_object(err, "cancelled")
      assert.is_true(corio.is_cancelled(err))
    end)

  it("rule 10: a TimeoutError has kind, message, traceback, errors, __tostring",
    function()
      local err = timeout_error()
      assert_error_object(err, "timeout")
      assert.is_false(corio.is_cancelled(err))
    end)

  it("rule 10: corio.is_cancelled is false for everything else", function()
    assert.is_false(corio.is_cancelled(nil))
    assert.is_false(corio.is_cancelled("cancelled"))
    assert.is_false(corio.is_cancelled(42))
    assert.is_false(corio.is_cancelled({}))
    assert.is_false(corio.is_cancelled(timeout_error()))
  end)

  it("rule 10: a string error crossing join is wrapped in kind 'error'",
    function()
      local t
      pcall(corio.scope, function(s)
        t = s:spawn(function() error("plain message", 0) end)
      end)
      local err = catch(t.join, t)
      assert_error_object(err, "error")
      assert.equal("plain message", err.value)
      assert.truthy(err.message:find("plain message", 1, true))
      assert.truthy(tostring(err):find("plain message", 1, true))
    end)

  it("rule 10: a user table crossing a scope keeps the original in err.value",
    function()
      local E = setmetatable({ code = 7 }, {
        __tostring = function() return "custom error 7" end,
      })
      local err = catch(corio.scope, function(s)
        s:spawn(function() error(E) end)
      end)
      assert_error_object(err, "error")
      assert.is_true(rawequal(E, err.value))
      assert.truthy(tostring(err):find("custom error 7", 1, true))
    end)

  it("rule 10: a corio error crossing join and scope keeps its object",
    function()
      local te
      local t
      local scope_err = catch(corio.scope, function(s)
        t = s:spawn(function()
          te = timeout_error()
          error(te)
        end)
      end)
      assert.is_true(rawequal(te, scope_err))
      assert.is_true(rawequal(te, catch(t.join, t)))
      assert.equal("timeout", scope_err.kind)

      local ch = corio.channel(1)
      ch:close()
      local closed = catch(ch.send, ch, 1)
      local t2
      local ok, scope_err2 = pcall(corio.scope, function(s)
        t2 = s:spawn(function() error(closed) end)
      end)
      assert.is_false(ok)
      assert.is_true(rawequal(closed, scope_err2))
      assert.is_true(rawequal(closed, catch(t2.join, t2)))
      assert.equal("closed", scope_err2.kind)
    end)

  it("rule 10: errors raised directly stay as raised", function()
    -- a corio error raised in the same task is not wrapped
    local ch = corio.channel(1)
    ch:close()
    local err = catch(ch.send, ch, 1)
    assert_error_object(err, "closed")
    -- a user error passing through s:with / l:with in the same task
    local E = { "mine" }
    local sem = corio.semaphore(1)
    assert.is_true(rawequal(E, catch(sem.with, sem, function() error(E) end)))
    assert.equal("plain", catch(sem.with, sem, function()
      error("plain", 0)
    end))
  end)
end)

describe("rule 9: tracebacks", function()
  it("rule 9: an error keeps the raising task's traceback and its spawn site",
    function()
      local error_line, spawn_line
      local function boom()
        error_line = debug.getinfo(1, "l").currentline + 1
        error("boom")
      end
      local err = catch(corio.scope, function(s)
        spawn_line = debug.getinfo(1, "l").currentline + 1
        s:spawn(function() corio.yield(); boom() end)
      end)
      assert.equal("string", type(err.traceback))
      local text = err.traceback .. "\n" .. tostring(err)
      assert.truthy(err.traceback:find("errors_spec.lua:" .. error_line, 1, true),
        "the traceback lacks the raising line " .. error_line .. ":\n"
          .. err.traceback)
      assert.truthy(text:find("errors_spec.lua:" .. spawn_line, 1, true),
        "the error lacks the spawn site " .. spawn_line .. ":\n" .. text)
    end)

  it("rule 9: a corio.spawn child's traceback names where it was spawned",
    function()
      local spawn_line
      local t
      local err = catch(corio.scope, function()
        spawn_line = debug.getinfo(1, "l").currentline + 1
        t = corio.spawn(function() error({ "table error" }) end)
      end)
      local text = tostring(err.traceback) .. "\n" .. tostring(err)
      assert.truthy(text:find("errors_spec.lua:" .. spawn_line, 1, true),
        "the error lacks the spawn site " .. spawn_line .. ":\n" .. text)
      assert.equal("failed", t:status())
    end)

  -- Was: the spawn site of a task spawned from a chunk made by load(code)
  -- printed the chunk's whole code, as its chunk name is the code.
  it("rule 9: a spawn site in a load()ed string shows Lua's short name",
    function()
      local code = "local s = ...\n" .. ("-- filler %d\n"):rep(20):format(
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)
        .. "local t = s:spawn(function() error('boom') end)\nreturn t\n"
      local err = catch(corio.scope, function(s)
        assert(load(code))(s)
      end)
      local text = tostring(err.traceback) .. "\n" .. tostring(err)
      assert.truthy(text:find('spawned at [string "local s = ......"]:22', 1, true),
        "the spawn site is not Lua's short name:\n" .. text)
      assert.falsy(text:find("filler 20", 1, true),
        "the message holds the chunk's code:\n" .. text)
    end)
end)

describe("rule 9: a deferred function's error", function()
  -- a helper named in the traceback: the raise point, not where the
  -- scope or task ran its deferred functions
  local raise_line
  local function failing_cleanup(what)
    raise_line = debug.getinfo(1, "l").currentline + 1
    error(what .. " cleanup failed")
  end

  it("in a scope, with other errors, keeps the traceback of where it was raised",
    function()
      local err = catch(corio.scope, function(s)
        s:spawn(function() error("child failed") end)
        corio.defer(function() failing_cleanup("scope") end)
      end)
      assert.equal(2, #err.errors)
      local d = err.errors[2]
      assert.truthy(tostring(d):find("scope cleanup failed", 1, true))
      assert.truthy(d.traceback:find("errors_spec.lua:" .. raise_line, 1, true),
        "the traceback lacks the raising line " .. raise_line .. ":\n" .. d.traceback)
      assert.truthy(d.traceback:find("failing_cleanup", 1, true), d.traceback)
    end)

  it("and the body's own error, both plain values, each keep theirs", function()
    local body_line
    local function failing_body()
      body_line = debug.getinfo(1, "l").currentline + 1
      error("body failed")
    end
    local err = catch(corio.scope, function()
      corio.defer(function() failing_cleanup("scope") end)
      failing_body()
    end)
    assert.equal(2, #err.errors)
    local b, d = err.errors[1], err.errors[2]
    assert.truthy(tostring(b):find("body failed", 1, true))
    assert.truthy(b.traceback:find("errors_spec.lua:" .. body_line, 1, true)
      and b.traceback:find("failing_body", 1, true),
      "the body error's traceback lacks its raise point:\n" .. b.traceback)
    assert.truthy(d.traceback:find("errors_spec.lua:" .. raise_line, 1, true)
      and d.traceback:find("failing_cleanup", 1, true),
      "the deferred function's traceback lacks its raise point:\n" .. d.traceback)
  end)

  it("in a task's body keeps the traceback of where it was raised", function()
    local err = catch(corio.scope, function(s)
      s:spawn(function()
        corio.defer(function() failing_cleanup("task") end)
        corio.yield()
      end)
    end)
    assert.truthy(tostring(err):find("task cleanup failed", 1, true))
    assert.truthy(err.traceback:find("errors_spec.lua:" .. raise_line, 1, true),
      "the traceback lacks the raising line " .. raise_line .. ":\n" .. err.traceback)
    assert.truthy(err.traceback:find("failing_cleanup", 1, true), err.traceback)
  end)
end)

describe("bad arguments", function()
  local function assert_bad_arg(pattern, fn, ...)
    local err = catch(fn, ...)
    local msg = tostring(err)
    assert.truthy(msg:find(pattern, 1, true),
      "expected '" .. pattern .. "' in: " .. msg)
  end
  local nan = 0 / 0
  local fn = function() end

  it("sleep rejects negative, NaN and non-number seconds", function()
    assert_bad_arg("bad argument #1 to 'sleep'", corio.sleep, -1)
    assert_bad_arg("bad argument #1 to 'sleep'", corio.sleep, -0.001)
    assert_bad_arg("bad argument #1 to 'sleep'", corio.sleep, nan)
    assert_bad_arg("bad argument #1 to 'sleep'", corio.sleep, "soon")
    assert_bad_arg("bad argument #1 to 'sleep'", corio.sleep, nil)
  end)

  it("timeout and move_on_after reject negative and NaN seconds", function()
    local ran = false
    local body = function() ran = true end
    assert_bad_arg("bad argument #1 to 'timeout'", corio.timeout, -1, body)
    assert_bad_arg("bad argument #1 to 'timeout'", corio.timeout, nan, body)
    assert_bad_arg("bad argument #1 to 'move_on_after'",
      corio.move_on_after, -1, body)
    assert_bad_arg("bad argument #1 to 'move_on_after'",
      corio.move_on_after, nan, body)
    assert.is_false(ran, "the body ran despite a bad deadline")
    assert_bad_arg("bad argument #2 to 'timeout'", corio.timeout, 1, 42)
    assert_bad_arg("bad argument #2 to 'move_on_after'",
      corio.move_on_after, 1, "x")
  end)

  it("spawn, scope, shield and defer reject a non-function", function()
    assert_bad_arg("bad argument #1 to 'spawn'", corio.spawn, 42)
    assert_bad_arg("bad argument #1 to 'spawn'", corio.spawn, nil)
    assert_bad_arg("bad argument #1 to 'scope'", corio.scope, "x")
    assert_bad_arg("bad argument #1 to 'shield'", corio.shield, {})
    assert_bad_arg("bad argument #1 to 'defer'", corio.defer, 1)
    corio.scope(function(s)
      assert_bad_arg("spawn", s.spawn, s, 42)
    end)
  end)

  it("semaphore rejects negative, fractional and non-number counts",
    function()
      assert_bad_arg("bad argument #1 to 'semaphore'", corio.semaphore, -1)
      assert_bad_arg("bad argument #1 to 'semaphore'", corio.semaphore, 1.5)
      assert_bad_arg("bad argument #1 to 'semaphore'", corio.semaphore, nan)
      assert_bad_arg("bad argument #1 to 'semaphore'", corio.semaphore, "x")
      assert.equal(0, corio.semaphore(0).available)
    end)

  it("channel rejects negative and fractional capacities", function()
    assert_bad_arg("bad argument #1 to 'channel'", corio.channel, -1)
    assert_bad_arg("bad argument #1 to 'channel'", corio.channel, 1.5)
    assert_bad_arg("bad argument #1 to 'channel'", corio.channel, "x")
  end)

  it("gather, map and first reject bad lists, functions and limits", function()
    assert_bad_arg("bad argument #1 to 'gather'", corio.gather, "x")
    assert_bad_arg("gather", corio.gather, { fn, 42 })
    assert_bad_arg("bad argument #1 to 'map'", corio.map, 42, fn)
    assert_bad_arg("bad argument #2 to 'map'", corio.map, { 1 }, nil)
    assert_bad_arg("limit", corio.map, { 1 }, fn, { limit = 0 })
    assert_bad_arg("limit", corio.map, { 1 }, fn, { limit = -1 })
    assert_bad_arg("limit", corio.map, { 1 }, fn, { limit = 1.5 })
    assert_bad_arg("bad argument #1 to 'first'", corio.first, "x")
  end)

  it("sending nil on a channel names the problem", function()
    local ch = corio.channel(1)
    local err = catch(ch.send, ch, nil)
    assert.truthy(tostring(err):find("nil", 1, true), tostring(err))
  end)
end)

describe("a method called on something else", function()
  it("names the method as called, the type wanted, and the caller's line", function()
    local objs = {
      { corio.spawn(function() end), "join", "corio.Task" },
      { corio.semaphore(1), "acquire", "corio.Semaphore" },
      { corio.semaphore(1), "release", "corio.Semaphore" },
      { corio.lock(), "acquire", "corio.Lock" },
      { corio.lock(), "release", "corio.Lock" },
      { corio.event(), "wait", "corio.Event" },
      { corio.channel(1), "send", "corio.Channel" },
      { corio.channel(1), "recv", "corio.Channel" },
    }
    local line = debug.getinfo(1, "l").currentline + 3
    for _, o in ipairs(objs) do
      local obj, m, tname = o[1], o[2], o[3]
      local ok, err = pcall(function() return obj[m](42) end)
      assert.is_false(ok)
      err = tostring(err)
      assert.truthy(err:find("'" .. m .. "'", 1, true), err)
      assert.truthy(err:find(tname .. " expected, got number", 1, true), err)
      assert.truthy(err:find("errors_spec.lua:" .. line, 1, true), err)
    end
  end)
end)

describe("corio calls where a task cannot suspend", function()
  local bare = "attempt to yield across C-call boundary"

  local function assert_explains(err)
    local msg = tostring(err)
    local lower = msg:lower()
    assert.are_not.equal(bare, msg)
    assert.truthy(lower:find("yield", 1, true) or lower:find("suspend", 1, true),
      "the message does not say it cannot suspend: " .. msg)
    assert.truthy(msg:find("C", 1, true),
      "the message does not mention the C call: " .. msg)
    -- more than the bare VM message: it explains what to do
    assert.truthy(#msg > #bare + 20, "the message explains nothing: " .. msg)
  end

  it("corio.sleep inside a table.sort comparator explains the error", function()
    local ok, err = pcall(table.sort, { 3, 1, 2 }, function(a, b)
      corio.sleep(0.001) -- must suspend: no fast path can avoid it
      return a < b
    end)
    assert.is_false(ok)
    assert_explains(err)
    corio.sleep(0.001) -- the task still works afterwards
  end)

  it("a channel recv inside a string.gsub callback explains the error",
    function()
      local ch = corio.channel(1) -- empty: recv must suspend
      local ok, err = pcall(string.gsub, "abc", "b", function()
        return ch:recv()
      end)
      assert.is_false(ok)
      assert_explains(err)
      corio.yield()
    end)

  it("task:join inside a table.sort comparator explains the error", function()
    -- join arms a wait on the target before it finds it cannot suspend;
    -- that wait must be undone (this once crashed undoing it).
    local ev = corio.event()
    local child = corio.spawn(function() ev:wait(); return "late" end)
    local ok, err = pcall(table.sort, { 3, 1, 2 }, function(a, b)
      child:join()
      return a < b
    end)
    assert.is_false(ok)
    assert_explains(err)
    ev:set()
    -- the undone wait left the child joinable, by this task too
    assert.are.equal("late", child:join())
  end)

  it("a semaphore acquire and a rendezvous send inside a comparator take and lose nothing",
    function()
      local function in_sort(f)
        return pcall(table.sort, { 3, 1, 2 }, function(a, b) f(); return a < b end)
      end
      local sem = corio.semaphore(0)
      local ok, err = in_sort(function() sem:acquire() end)
      assert.is_false(ok)
      assert_explains(err)
      -- the failed acquire left no waiter behind to swallow this release
      local got = false
      local w = corio.spawn(function() sem:acquire(); got = true end)
      corio.yield()
      sem:release()
      w:join()
      assert.is_true(got)

      local ch = corio.channel(0)
      ok, err = in_sort(function() ch:send("ghost") end)
      assert.is_false(ok)
      assert_explains(err)
      assert.is_false((ch:try_recv()))     -- the failed send is not pending
      local r = corio.spawn(function() return ch:recv() end)
      corio.yield()
      ch:send("real")
      assert.are.equal("real", r:join())
    end)

  it("a scope with tasks inside a comparator explains the error and is left",
    function()
      local log = {}
      local ok, err = pcall(table.sort, { 3, 1, 2 }, function(a, b)
        corio.scope(function(s)
          s:spawn(function()
            log[#log + 1] = "child started"
            corio.sleep(10)
            log[#log + 1] = "child not cancelled"
          end)
        end)
        return a < b
      end)
      assert.is_false(ok)
      assert_explains(err)
      -- the scope was left: this task is not cancelled, new scopes work,
      -- and the child was cancelled (the task's own scope waited for it)
      local t = corio.spawn(function() return "fine" end)
      assert.are.equal("fine", t:join())
      assert.are.equal(3, corio.scope(function(s)
        return s:spawn(function() corio.yield(); return 3 end):join()
      end))
      corio.sleep(0.01)
      assert.are.same({ "child started" }, log)
    end)

  it("an event wait inside a gsub callback in a child task explains the error",
    function()
      local ev = corio.event() -- never set: wait must suspend
      local t = corio.spawn(function()
        return pcall(string.gsub, "aaa", "a", function()
          ev:wait()
          return "b"
        end)
      end)
      local ok, err = t:join()
      assert.is_false(ok)
      assert_explains(err)
    end)
end)
