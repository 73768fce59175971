-- sync_spec.lua: SPEC §1 corio.semaphore, corio.lock and corio.event:
-- FIFO hand-off (rule 8), cancelled waiters (rule 7), lock ownership and
-- broken locks. Cancellation checks on entry are in scope_spec.lua (rule
-- 3); bad constructor arguments in errors_spec.lua.

local corio = require("corio")
local testing = require("corio.testing")

local function catch(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error, but the call succeeded")
  return err
end

local function new_log()
  local log = {}
  return log, function(v) log[#log + 1] = v end
end

local function near(expected, got, tol)
  tol = tol or 0.01
  assert(math.abs(got - expected) <= tol,
    ("expected %.4f (+-%g), got %.4f"):format(expected, tol, got))
end

describe("corio.semaphore", function()
  it("counts permits in s.available", function()
    local s = corio.semaphore(2)
    assert.equal(2, s.available)
    s:acquire()
    assert.equal(1, s.available)
    s:acquire()
    assert.equal(0, s.available)
    s:release()
    assert.equal(1, s.available)
    s:release()
    assert.equal(2, s.available)
  end)

  it("is unbounded: release may raise the count above n", function()
    local s = corio.semaphore(1)
    s:release()
    assert.equal(2, s.available)
    s:acquire(); s:acquire()
    assert.equal(0, s.available)
  end)

  it("acquire blocks while no permit is free", function()
    local log, add = new_log()
    local s = corio.semaphore(0)
    corio.scope(function(sc)
      sc:spawn(function() s:acquire(); add("acquired") end)
      corio.sleep(0.01)
      add("releasing")
      s:release()
    end)
    assert.same({ "releasing", "acquired" }, log)
    assert.equal(0, s.available)
  end)

  it("rule 8: waiters get permits in FIFO order", function()
    local log, add = new_log()
    local s = corio.semaphore(0)
    corio.scope(function(sc)
      for i = 1, 5 do
        sc:spawn(function() s:acquire(); add(i) end)
        corio.yield() -- waiter i queues before waiter i+1 starts
      end
      for _ = 1, 5 do
        s:release()
        corio.sleep(0.001)
      end
    end)
    assert.same({ 1, 2, 3, 4, 5 }, log)
  end)

  it("rule 8: release hands the permit to the oldest waiter directly",
    function()
      local log, add = new_log()
      local s = corio.semaphore(0)
      corio.scope(function(sc)
        sc:spawn(function()
          s:acquire()
          add("waiter got it")
          corio.sleep(0.01)
          add("waiter releases")
          s:release()
        end)
        corio.yield() -- the waiter is blocked in acquire
        s:release()
        assert.equal(0, s.available, "the permit was not handed off")
        s:acquire() -- must queue behind the waiter, not steal its permit
        add("releaser got it")
      end)
      assert.same({ "waiter got it", "waiter releases", "releaser got it" },
        log)
    end)

  it("rule 7: a cancelled waiter never takes a permit", function()
    local log, add = new_log()
    local s = corio.semaphore(0)
    corio.scope(function(sc)
      local a = sc:spawn(function() s:acquire(); add("a") end)
      sc:spawn(function() s:acquire(); add("b") end)
      corio.yield()
      a:cancel()
      s:release()
      corio.sleep(0.01)
      assert.equal(0, s.available)
      s:release()
      corio.sleep(0.01)
      assert.equal(1, s.available)
      assert.equal("cancelled", a:status())
    end)
    assert.same({ "b" }, log)
  end)

  it("rule 7: a waiter whose deadline fired leaves the queue", function()
    testing.autojump(function()
      local s = corio.semaphore(0)
      assert.is_false(corio.move_on_after(1, function() s:acquire() end))
      s:release()
      assert.equal(1, s.available)
    end)
  end)

  it("with(fn, ...) holds a permit around fn and returns its results",
    function()
      local s = corio.semaphore(1)
      local a, b = s:with(function(x)
        assert.equal(0, s.available)
        return x, "two"
      end, "one")
      assert.same({ "one", "two" }, { a, b })
      assert.equal(1, s.available)
    end)

  it("with releases when fn raises, and the error stays as raised", function()
    local s = corio.semaphore(1)
    local E = { "E" }
    local err = catch(s.with, s, function() error(E) end)
    assert.is_true(rawequal(E, err), "s:with changed the error object")
    assert.equal(1, s.available)
  end)

  it("with releases when fn is cancelled", function()
    testing.autojump(function()
      local s = corio.semaphore(1)
      assert.is_false(corio.move_on_after(1, function()
        s:with(corio.sleep, 5)
      end))
      assert.equal(1, s.available)
    end)
  end)
end)

describe("corio.lock", function()
  it("acquire and release; with returns fn's results", function()
    local l = corio.lock()
    l:acquire()
    l:release()
    local a, b = l:with(function(x) return x, 2 end, 1)
    assert.same({ 1, 2 }, { a, b })
    l:acquire() -- free again
    l:release()
  end)

  it("excludes other tasks while held", function()
    local log, add = new_log()
    local l = corio.lock()
    corio.scope(function(sc)
      for i = 1, 3 do
        sc:spawn(function()
          l:with(function()
            add("in " .. i)
            corio.sleep(0.002)
            add("out " .. i)
          end)
        end)
      end
    end)
    assert.same({ "in 1", "out 1", "in 2", "out 2", "in 3", "out 3" }, log)
  end)

  it("with releases when fn raises, and the error stays as raised", function()
    local l = corio.lock()
    local E = { "E" }
    local err = catch(l.with, l, function() error(E) end)
    assert.is_true(rawequal(E, err))
    l:acquire()
    l:release()
  end)

  it("rule 8: re-acquire by the owner raises", function()
    local l = corio.lock()
    l:acquire()
    local err = catch(l.acquire, l)
    assert.is_not_nil(err)
    l:release() -- still held by us, exactly once
    catch(l.release, l)
  end)

  it("rule 8: release by a non-owner raises", function()
    local log, add = new_log()
    local l = corio.lock()
    l:acquire()
    local t = corio.spawn(function()
      local ok, err = pcall(l.release, l)
      add(ok and "released" or "refused")
      return err
    end)
    local err = t:join()
    assert.truthy(tostring(err):lower():find("lock")
      or tostring(err):lower():find("own"), tostring(err))
    -- the lock is still ours: another task waits for it
    local t2 = corio.spawn(function() l:acquire(); add("t2 got it"); l:release() end)
    corio.sleep(0.01)
    add("owner releases")
    l:release()
    t2:join()
    assert.same({ "refused", "owner releases", "t2 got it" }, log)
  end)

  it("releasing an unheld lock raises", function()
    local l = corio.lock()
    local err = catch(l.release, l)
    assert.truthy(tostring(err):lower():find("lock")
      or tostring(err):lower():find("held"), tostring(err))
  end)

  it("rule 8: waiters get the lock in FIFO order", function()
    local log, add = new_log()
    local l = corio.lock()
    l:acquire()
    corio.scope(function(sc)
      for i = 1, 5 do
        sc:spawn(function() l:acquire(); add(i); l:release() end)
        corio.yield()
      end
      l:release()
    end)
    assert.same({ 1, 2, 3, 4, 5 }, log)
  end)

  it("rule 8: release hands the lock to the oldest waiter directly", function()
    local log, add = new_log()
    local l = corio.lock()
    l:acquire()
    corio.scope(function(sc)
      sc:spawn(function()
        l:acquire()
        add("waiter")
        corio.sleep(0.01)
        l:release()
      end)
      corio.yield()
      l:release()
      l:acquire() -- must wait for the waiter
      add("first owner again")
      l:release()
    end)
    assert.same({ "waiter", "first owner again" }, log)
  end)

  it("rule 7: a cancelled waiter never takes the lock", function()
    local log, add = new_log()
    local l = corio.lock()
    l:acquire()
    corio.scope(function(sc)
      local b = sc:spawn(function() l:acquire(); add("b"); l:release() end)
      sc:spawn(function() l:acquire(); add("c"); l:release() end)
      corio.yield()
      b:cancel()
      l:release()
    end)
    assert.same({ "c" }, log)
    l:acquire()
    l:release()
  end)

  it("rule 8: an owner that ends holding the lock breaks it", function()
    local l = corio.lock()
    local owner
    local waiter_err
    corio.scope(function(sc)
      owner = sc:spawn(function()
        l:acquire()
        corio.sleep(0.01)
        -- ends without releasing
      end)
      sc:spawn(function()
        corio.yield() -- the owner holds it now
        local ok, err = pcall(l.acquire, l)
        assert(not ok, "a waiter of a broken lock got it")
        waiter_err = err
      end)
    end)
    assert.is_not_nil(waiter_err)
    assert.truthy(tostring(waiter_err):find(owner.name, 1, true),
      "the error does not name the task that ended holding the lock: "
        .. tostring(waiter_err))
    -- every later acquire fails too, instead of hanging
    local later = catch(l.acquire, l)
    assert.truthy(tostring(later):find(owner.name, 1, true))
    local later2 = catch(l.with, l, function() end)
    assert.truthy(tostring(later2):find(owner.name, 1, true))
  end)
end)

describe("corio.event", function()
  it("wait blocks until set; set wakes every waiter in order", function()
    local log, add = new_log()
    local e = corio.event()
    assert.is_false(e:is_set())
    corio.scope(function(sc)
      for i = 1, 3 do
        sc:spawn(function() e:wait(); add(i) end)
      end
      corio.sleep(0.01)
      add("set")
      e:set()
      assert.is_true(e:is_set())
    end)
    assert.same({ "set", 1, 2, 3 }, log)
  end)

  it("wait on a set event returns without blocking", function()
    testing.autojump(function()
      local e = corio.event()
      e:set()
      e:set() -- setting twice is harmless
      local t0 = corio.now()
      e:wait()
      e:wait()
      near(0, corio.now() - t0)
    end)
  end)

  it("clear makes wait block again", function()
    local log, add = new_log()
    local e = corio.event()
    e:set()
    e:clear()
    assert.is_false(e:is_set())
    corio.scope(function(sc)
      sc:spawn(function() e:wait(); add("woken") end)
      corio.sleep(0.01)
      add("set")
      e:set()
    end)
    assert.same({ "set", "woken" }, log)
  end)

  it("rule 7: a cancelled waiter is removed; the others are woken", function()
    local log, add = new_log()
    local e = corio.event()
    corio.scope(function(sc)
      local a = sc:spawn(function() e:wait(); add("a") end)
      sc:spawn(function() e:wait(); add("b") end)
      corio.yield()
      a:cancel()
      corio.yield()
      e:set()
    end)
    assert.same({ "b" }, log)
  end)
end)
