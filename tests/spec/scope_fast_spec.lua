-- scope_fast_spec.lua: the fast way in and out of a scope (session 9):
-- a body that returned with nothing to wait for, run or raise leaves its
-- scope through the FFI (bindings/core.c ffi_scope_leave), and the scope
-- objects of timeout, move_on_after, shield and gather's own bodies are
-- reused. These are the corner cases around that path: each must behave
-- as the long way (init.lua finish) does. Timed tests run on the virtual
-- clock (autojump).

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch, new_log = helpers.catch, helpers.new_log
local testing = require("corio.testing")

local function nop() end
local function pack(...) return { n = select("#", ...), ... } end

-- more than the pools hold (CORIO_SCOPE_POOL), so records are reused and
-- some are not
local MANY = 100

describe("the fast scope exit", function()
  it("passes results through, with and without arguments for fn", function()
    for _ = 1, 3 do
      assert.same({ 1, 2 }, { corio.timeout(1, function() return 1, 2 end) })
      assert.same({ "a", "b" }, { corio.timeout(1, function(x, y) return x, y end, "a", "b") })
      assert.same({ 3 }, { corio.shield(function() return 3 end) })
      assert.same({ 4, 5 }, { corio.shield(function(x) return x, 5 end, 4) })
      local r = pack(corio.move_on_after(1, function() return nil, 2 end))
      assert.equal(3, r.n)
      assert.is_true(r[1]); assert.is_nil(r[2]); assert.equal(2, r[3])
      assert.equal(0, select("#", corio.timeout(1, nop)))
      assert.same({ true }, { corio.move_on_after(1, nop) })
      assert.same({ "x", 7 }, { corio.scope(function(s, v) assert.is_false(s.cancelled); return "x", v end, 7) })
    end
  end)

  it("a scope that spawns nothing but defers runs its deferred functions at its exit", function()
    local log, add = new_log()
    for i = 1, 3 do
      corio.timeout(1, function()
        corio.defer(function() add("t" .. i .. "a") end)
        corio.defer(function() add("t" .. i .. "b") end)
      end)
      add("after t" .. i)
      corio.shield(function() corio.defer(function() add("s" .. i) end) end)
      corio.timeout(1, nop)   -- a reused record must not keep the defers
      add("after s" .. i)
    end
    assert.same({ "t1b", "t1a", "after t1", "s1", "after s1",
                  "t2b", "t2a", "after t2", "s2", "after s2",
                  "t3b", "t3a", "after t3", "s3", "after s3" }, log)
  end)

  it("a deferred function that raises fails the scope, and the next scope is clean", function()
    for _ = 1, 3 do
      local err = catch(corio.timeout, 1, function()
        corio.defer(function() error("handler failed", 0) end)
      end)
      assert.matches("handler failed", tostring(err))
      assert.same({ 1 }, { corio.timeout(1, function() return 1 end) })
    end
  end)

  it("a body that raises: the error goes out as raised, and the next scopes are clean", function()
    local mine = { "mine" }
    for _ = 1, MANY do
      assert.equal(mine, catch(corio.timeout, 1, function() error(mine) end))
      assert.equal(mine, catch(corio.shield, function() error(mine) end))
      assert.is_nil(select(2, corio.move_on_after(1, nop)))
      local ok, v = corio.move_on_after(1, function() return "fine" end)
      assert.is_true(ok); assert.equal("fine", v)
    end
    corio.sleep(0)   -- the task is not left cancelled or inside a dead scope
  end)

  it("deadlines of scopes left the fast way are disarmed, and reused records get fresh ones", function()
    testing.autojump(function()
      for _ = 1, MANY do corio.timeout(0.5, nop); corio.move_on_after(0.5, nop) end
      corio.sleep(1)   -- none of those deadlines fires now
      local t0 = corio.now()
      local err = catch(corio.timeout, 0.25, function() corio.sleep(10) end)
      assert.equal("timeout", err.kind)
      assert.equal(0.25, err.seconds)
      helpers.near(0.25, corio.now() - t0)
      assert.is_false(corio.move_on_after(0.125, function() corio.sleep(10) end))
      for _ = 1, MANY do
        assert.equal(9, corio.timeout(5, function() return 9 end))
      end
      -- after many reuses, still the deadline asked for
      t0 = corio.now()
      assert.is_false(corio.move_on_after(0.5, corio.sleep, 10))
      helpers.near(0.5, corio.now() - t0)
    end)
  end)

  it("a deadline of 0 with no checkpoint in the body: as the long way (rule 6)", function()
    for _ = 1, 3 do
      assert.same({ true, 1 }, { corio.move_on_after(0, function() return 1 end) })
      assert.same({ 2 }, { corio.timeout(0, function() return 2 end) })
      assert.is_false(corio.move_on_after(0, corio.yield))
      assert.equal("timeout", catch(corio.timeout, 0, corio.yield).kind)
    end
  end)

  it("cancelled from outside while its deadline is armed: the cancel goes on outwards", function()
    local log, add = new_log()
    testing.autojump(function()
      local outer
      corio.scope(function(s)
        outer = s
        local ok, err = pcall(corio.timeout, 5, function()
          s:cancel()   -- no checkpoint after: the body returns
          return "done"
        end)
        add(ok and "returned" or (corio.is_cancelled(err) and "cancelled" or tostring(err)))
        local ok2, err2 = pcall(corio.sleep, 0)
        add(ok2 and "slept" or (corio.is_cancelled(err2) and "cancelled" or tostring(err2)))
      end)
      assert.is_true(outer.cancelled)
      -- the inner deadline does not fire later
      corio.sleep(10)
      assert.equal(1, corio.timeout(1, function() return 1 end))
    end)
    assert.same({ "returned", "cancelled" }, log)
  end)

  it("cancelled from outside while blocked with a deadline armed", function()
    testing.autojump(function()
      local t = corio.spawn(function()
        for _ = 1, 3 do corio.timeout(5, nop) end
        corio.timeout(5, function() corio.sleep(10) end)
      end)
      corio.sleep(1)
      t:cancel()
      assert.is_true(corio.is_cancelled(catch(t.join, t)))
      assert.equal("cancelled", t:status())
      corio.sleep(10)   -- its deadline was stopped
    end)
  end)

  it("nested fast scopes, each left the fast way, in order", function()
    local depth = 0
    local function nest(k)
      if k == 0 then return "bottom" end
      depth = depth + 1
      local kind = k % 4
      if kind == 0 then
        return corio.scope(function() return nest(k - 1) end)
      elseif kind == 1 then
        return corio.timeout(10, nest, k - 1)
      elseif kind == 2 then
        local ok, v = corio.move_on_after(10, function() return nest(k - 1) end)
        assert.is_true(ok)
        return v
      end
      return corio.shield(function() return nest(k - 1) end)
    end
    for _ = 1, 5 do assert.equal("bottom", nest(40)) end
    assert.equal(200, depth)
    -- the task's innermost scope is its own again: a cancel of the task's
    -- scope chain is seen, a shield still shields
    corio.scope(function(s)
      s:cancel()
      assert.equal("kept", corio.shield(function() corio.yield(); return "kept" end))
      assert.is_true(corio.is_cancelled(catch(corio.yield)))
    end)
  end)

  it("an inner scope's cancel does not stay with a reused record", function()
    for _ = 1, 3 do
      corio.scope(function(s)
        corio.timeout(10, nop)
        corio.shield(nop)
        s:cancel()
        corio.timeout(10, nop)   -- entered in a cancelled scope
        assert.is_true(corio.is_cancelled(catch(corio.yield)))
      end)
      -- a shield entered and left inside a cancelled scope, then reused
      corio.scope(function(s)
        s:cancel()
        corio.shield(nop)
      end)
      corio.yield()   -- not cancelled here
      assert.equal(1, corio.shield(function() corio.yield(); return 1 end))
    end
  end)

  it("a corio.scope object kept after its exit stays closed while later scopes come and go", function()
    local kept = {}
    for i = 1, 10 do corio.scope(function(s) kept[i] = s end) end
    for _ = 1, MANY do corio.scope(nop); corio.timeout(1, nop) end
    for i = 1, 10 do
      assert.matches("returned", tostring(kept[i]))
      assert.is_false(kept[i].cancelled)
      assert.matches("has returned", tostring(catch(kept[i].spawn, kept[i], nop)))
    end
    for i = 1, 10 do assert.is_true(kept[i] ~= kept[i % 10 + 1]) end
  end)

  it("a scope whose body spawned a task that already ended is left as before", function()
    for _ = 1, 3 do
      local v = corio.timeout(5, function()
        local t = corio.spawn(function() return 5 end)
        return t:join()
      end)
      assert.equal(5, v)
      local log, add = new_log()
      corio.shield(function()
        corio.spawn(function() corio.yield(); add("child") end)
        add("body")
      end)
      add("after")
      assert.same({ "body", "child", "after" }, log)
    end
  end)

  it("a generator that yields out of fast scopes, between fast scopes of its resumer", function()
    local gen = coroutine.wrap(function()
      for i = 1, 3 do
        corio.timeout(10, function()
          corio.shield(function() coroutine.yield(i) end)
        end)
      end
      return "end"
    end)
    local got = {}
    for _ = 1, 4 do
      corio.timeout(10, nop)
      got[#got + 1] = gen()
      corio.shield(nop)
    end
    assert.same({ 1, 2, 3, "end" }, got)
    corio.yield()
  end)
end)

describe("gather's own bodies", function()
  it("map runs each call's deferred functions when it returns", function()
    local log, add = new_log()
    local r = corio.map({ 1, 2, 3, 4, 5 }, function(x)
      corio.defer(function() add("d" .. x) end)
      add("c" .. x)
      return x * 10
    end, { limit = 1 })
    assert.same({ 10, 20, 30, 40, 50 }, r)
    assert.same({ "c1", "d1", "c2", "d2", "c3", "d3", "c4", "d4", "c5", "d5" }, log)
  end)

  it("map waits for the tasks a call spawned before the next call", function()
    local log, add = new_log()
    corio.map({ 1, 2, 3 }, function(x)
      corio.spawn(function() corio.yield(); corio.yield(); add("t" .. x) end)
      add("c" .. x)
    end, { limit = 1 })
    assert.same({ "c1", "t1", "c2", "t2", "c3", "t3" }, log)
  end)

  it("return_errors: failures between fast calls land in errors, the rest in results", function()
    local items = {}
    for i = 1, MANY do items[i] = i end
    local results, errs = corio.map(items, function(x)
      if x % 3 == 0 then error("bad " .. x, 0) end
      if x % 5 == 0 then corio.defer(nop) end
      return x
    end, { limit = 4, return_errors = true })
    for i = 1, MANY do
      if i % 3 == 0 then
        assert.is_nil(results[i])
        assert.matches("bad " .. i, tostring(errs[i]))
      else
        assert.equal(i, results[i])
        assert.is_nil(errs[i])
      end
    end
  end)

  it("a failing call fails map, and map afterwards works", function()
    local err = catch(corio.map, { 1, 2, 3, 4, 5, 6 }, function(x)
      if x == 4 then error("four", 0) end
      return x
    end, { limit = 2 })
    assert.matches("four", tostring(err))
    assert.same({ 2, 3, 4 }, corio.map({ 1, 2, 3 }, function(x) return x + 1 end, { limit = 1 }))
  end)

  it("map cancelled from outside stops, and later maps are not cancelled", function()
    testing.autojump(function()
      local calls = 0
      assert.is_false(corio.move_on_after(1, function()
        corio.map({ 1, 2, 3, 4, 5, 6, 7, 8 }, function()
          calls = calls + 1
          corio.sleep(0.4)
        end, { limit = 2 })
      end))
      assert.is_true(calls <= 6)
      local r = corio.map({ 1, 2, 3, 4, 5 }, function(x) return -x end, { limit = 2 })
      assert.same({ -1, -2, -3, -4, -5 }, r)
    end)
  end)
end)
