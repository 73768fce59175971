-- clock_spec.lua: what sleeps and deadlines count from (runtime/rt.c
-- corio__base): the clock at the call, but in a task's first run less
-- the time from its spawn burst to its start. Each test checks
-- an order or a lower bound that holds however slow the machine is: the
-- other ways of counting reverse the order or break the bound.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local new_log = helpers.new_log

local mono, hold = helpers.mono, helpers.hold

describe("what sleeps and deadlines count from", function()
  it("a task's first sleep counts from its spawn, not from when it started", function()
    local log, add = new_log()
    corio.scope(function(s)
      s:spawn(function() corio.sleep(0.1); add("a") end)
      hold(0.15)          -- a starts 0.15 s after its spawn
      corio.now()         -- ends the burst: b's is a new one
      s:spawn(function() corio.sleep(0.02); add("b") end)
    end)
    -- a's deadline is its spawn + 0.1; b's is 0.15 + 0.02 later than that.
    -- Counted from when a started, a would end 0.08 s after b.
    assert.same({ "a", "b" }, log)
  end)

  it("so do the deadlines of timeout and move_on_after", function()
    local log, add = new_log()
    corio.scope(function(s)
      s:spawn(function()
        assert.is_false(corio.move_on_after(0.1, corio.sleep, 10))
        add("a")
      end)
      s:spawn(function()
        local ok, err = pcall(corio.timeout, 0.1, corio.sleep, 10)
        assert.is_false(ok)
        assert.equal("timeout", err.kind)
        add("a2")
      end)
      hold(0.15)
      corio.now()
      s:spawn(function()
        assert.is_false(corio.move_on_after(0.02, corio.sleep, 10))
        add("b")
      end)
    end)
    -- a and a2 end about together, both before b
    assert.equal("b", log[3])
    table.sort(log)
    assert.same({ "a", "a2", "b" }, log)
  end)

  it("a sleep never ends sooner than d after a corio.now() its task read", function()
    local got = {}
    corio.scope(function(s)
      for i = 1, 3 do
        s:spawn(function()
          local t0 = corio.now()  -- first thing: ends the first-run discount
          corio.sleep(0.05)
          got[i] = corio.now() - t0
        end)
      end
      hold(0.1)  -- the spawn-time base is 0.1 s old when they start
    end)
    for i = 1, 3 do assert.is_true(got[i] >= 0.05, tostring(got[i])) end
    -- and in a task's later runs, after it was suspended
    local t0 = corio.now()
    corio.yield()
    hold(0.05)
    local t1 = corio.now()
    corio.sleep(0.05)
    assert.is_true(corio.now() - t1 >= 0.05)
    assert.is_true(corio.now() - t0 >= 0.1)
  end)

  it("a task's own running time before a sleep does not shorten it", function()
    local took = {}
    corio.scope(function(s)
      s:spawn(function()   -- in its first run
        local t0 = mono()
        hold(0.1)
        corio.sleep(0.1)
        took.first = mono() - t0
        t0 = mono()          -- and in a later one
        hold(0.1)
        corio.sleep(0.1)
        took.later = mono() - t0
      end)
    end)
    assert.is_true(took.first >= 0.2, "first run: " .. took.first)
    assert.is_true(took.later >= 0.2, "later run: " .. took.later)
  end)

  it("tasks spawned in one burst count from its first spawn", function()
    -- x first, y 30 ms of the spawner's work later (in steps of 1 ms, so
    -- the same burst): y's 0.1 s ends before x's 0.12 s. Counted from
    -- each spawn, y would end 10 ms after x.
    -- Up to 3 tries: on a loaded machine the spawner can be preempted for
    -- over 50 ms between two spawns, which rightly starts a new burst; a
    -- clock that counted from each spawn fails all three.
    local log
    for _ = 1, 3 do
      local add
      log, add = new_log()
      corio.scope(function(s)
        s:spawn(function() corio.sleep(0.12); add("x") end)
        for _ = 1, 30 do
          hold(0.001)
          s:spawn(function() end)
        end
        s:spawn(function() corio.sleep(0.1); add("y") end)
      end)
      if log[1] == "y" then break end
    end
    assert.same({ "y", "x" }, log)
  end)

  it("a spawn after the spawner computed for a while counts from itself", function()
    -- a watchdog spawned after 0.2 s of work, without a corio.now(),
    -- still waits its whole 0.1 s (a pause over 50 ms starts a burst)
    local spawned, took
    corio.scope(function(s)
      s:spawn(function() end)  -- a burst begins
      hold(0.2)
      spawned = mono()
      s:spawn(function()
        corio.sleep(0.1)
        took = mono() - spawned
      end)
    end)
    assert.is_true(took >= 0.1, "the watchdog slept " .. took)
  end)

  it("a sleeper beside a task that keeps yielding still sleeps its whole time", function()
    -- a task that yields in a loop never lets the queue drain: the clock
    -- must still move, or a sleeper beside it would wake at once each time
    local stop = false
    local t0, naps = corio.now(), 0
    corio.scope(function(s)
      s:spawn(function() while not stop do corio.yield() end end)
      s:spawn(function()
        for _ = 1, 5 do
          corio.sleep(0.02)
          naps = naps + 1
        end
        stop = true
      end)
    end)
    assert.equal(5, naps)
    assert.is_true(corio.now() - t0 >= 0.1, "five sleeps of 0.02 s took "
      .. (corio.now() - t0))
  end)

  it("a virtual clock (autojump) still counts from its own time", function()
    local testing = require("corio.testing")
    local log, add = new_log()
    testing.autojump(function()
      local t0 = corio.now()
      corio.scope(function(s)
        s:spawn(function() corio.sleep(10); add(corio.now() - t0) end)
        s:spawn(function() corio.sleep(5); add(corio.now() - t0) end)
      end)
    end)
    assert.equal(2, #log)
    assert.is_true(math.abs(log[1] - 5) < 1e-6, tostring(log[1]))
    assert.is_true(math.abs(log[2] - 10) < 1e-6, tostring(log[2]))
  end)
end)

describe("durations of 1e9 s and more are math.huge", function()
  -- (a sleep that long: hunt_testing_spec)
  local testing = require("corio.testing")

  it("a deadline that long never fires, and a shorter one still does", function()
    testing.autojump(function()
      local t0 = corio.now()
      local outcome = "still running"
      corio.scope(function(s)
        s:spawn(function()
          -- were 1e9 s a deadline, it would pass during the sleeps below
          outcome = corio.move_on_after(1e9, corio.sleep, math.huge)
        end)
        corio.sleep(9.9e8)
        corio.sleep(9.9e8)
        assert.equal("still running", outcome)
        s:cancel()
      end)
      assert.equal("still running", outcome)
      assert.equal("done", corio.timeout(math.huge, function() corio.sleep(5); return "done" end))
      local t1 = corio.now()
      assert.is_false((corio.move_on_after(1e9 - 1, corio.sleep, 2e9)))
      assert.is_true(math.abs(corio.now() - t1 - (1e9 - 1)) < 1e-3, tostring(corio.now() - t1))
      assert.is_true(corio.now() - t0 > 2.9e9)
    end)
  end)
end)
