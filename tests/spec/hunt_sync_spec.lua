-- hunt_sync_spec.lua: regressions found by a bug hunt through the
-- synchronisation and concurrency helpers (semaphore, lock, event,
-- channel, gather, map, first, to_thread). Each test failed before the fix
-- committed with it, unless it says it guards behaviour that was right.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch

describe("semaphore:with and lock:with given a non-function", function()
  it("raise a bad argument error naming 'with', and take no permit", function()
    local s = corio.semaphore(1)
    local err = catch(s.with, s, 42)
    assert.matches("bad argument #1 to 'with' %(function expected, got number%)", tostring(err))
    assert.equal(1, s.available)
    local l = corio.lock()
    err = catch(l.with, l, nil)
    assert.matches("bad argument #1 to 'with' %(function expected, got nil%)", tostring(err))
    assert.is_false(l:locked())
  end)
end)

describe("map with a limit below the number of items", function()
  it("runs each call's deferred functions when that call returns", function()
    local l = corio.lock()
    local log = {}
    local r = corio.map({ 1, 2, 3 }, function(x)
      l:acquire()
      corio.defer(function() log[#log + 1] = "release " .. x; l:release() end)
      log[#log + 1] = "got " .. x
      return x * 10
    end, { limit = 1 })
    assert.same({ 10, 20, 30 }, r)
    assert.same({ "got 1", "release 1", "got 2", "release 2", "got 3", "release 3" }, log)
  end)

  it("awaits the tasks a call spawned before that call counts as done", function()
    local log = {}
    corio.map({ 1, 2 }, function(x)
      corio.spawn(function() corio.sleep(0.01); log[#log + 1] = "child " .. x end)
      log[#log + 1] = "call " .. x
    end, { limit = 1 })
    assert.same({ "call 1", "child 1", "call 2", "child 2" }, log)
  end)
end)

describe("gather and map with return_errors", function()
  it("put an error raised by a call's deferred function in errors[i]", function()
    local r, errs = corio.gather({
      function() corio.defer(function() error("in defer", 0) end); return 1 end,
      function() return 2 end,
    }, { return_errors = true })
    assert.equal(2, r[2])
    assert.is_nil(errs[2])
    assert.equal("in defer", errs[1] and errs[1].value)
    local r2, errs2 = corio.map({ 1, 2 }, function(x)
      if x == 1 then corio.defer(function() error("map defer", 0) end) end
      return x
    end, { return_errors = true, limit = 1 })
    assert.equal(2, r2[2])
    assert.equal("map defer", errs2[1] and errs2[1].value)
  end)

  -- guards the fix above (calls run in a body of their own)
  it("keep the traceback of where a non-corio error was raised", function()
    local _, errs = corio.map({ 1 }, function() error({ mine = true }) end,
      { return_errors = true })
    assert.is_true(errs[1].value.mine)
    assert.matches("hunt_sync_spec.lua:%d+", errs[1].traceback)
  end)
end)

describe("to_thread calls cancelled while their workers run", function()
  -- The loop's pre-poll take of finished requests cleared the pool's
  -- "loop may block" flag whenever it took any; when every one it took
  -- belonged to a cancelled caller no task became ready, the loop blocked,
  -- and a worker finishing later (seeing the flag clear) never woke it:
  -- the next call hung until some timer fired.
  it("do not leave the loop asleep when a later call's worker finishes", function()
    local function busy(s) local c = os.clock() while os.clock() - c < s do end end
    for round = 1, 30 do
      corio.scope(function(s)
        for _ = 1, 8 do s:spawn(function() corio.to_thread(busy, 0.002) end) end
        corio.sleep(0.001)
        s:cancel()
      end)
      local ok, v = corio.move_on_after(1, corio.to_thread, function() return 1 end)
      assert.is_true(ok, "round " .. round .. ": the call did not return within 1 s")
      assert.equal(1, v)
    end
  end)
end)

describe("to_thread given an argument that cannot cross", function()
  it("names its number, not just the function", function()
    local err = catch(corio.to_thread, function(a) return a end, 1, "x", print)
    assert.matches("bad argument #4 to 'to_thread' %(cannot send the arguments to a worker: "
      .. "cannot serialize 'function'", tostring(err))
    err = catch(corio.to_thread, function(a) return a end, { { coroutine.create(print) } })
    assert.matches("bad argument #2 to 'to_thread'", tostring(err))
  end)
end)
