-- cancel_fairness_spec.lua: rule 15 (one busy task cannot starve the
-- others) at cancelled checkpoints. A checkpoint in a cancelled scope
-- raises Cancelled without blocking, so it is a fast path: a task that
-- swallows that Cancelled in a loop must still let the other tasks (and
-- the timers) run, within the budget, as trio's checkpoints do.

local corio = require("corio")

-- Runs `swallow` in a loop inside a cancelled scope, beside a task that
-- needs three turns of the scheduler; the loop ends when that task got
-- them, or after `cap` iterations (then the others were starved).
-- Returns the turns the other task had when the loop ended, and the
-- iterations.
local function starves(swallow, cap)
  local turns, spins, seen = 0, 0, nil
  corio.scope(function(s)
    s:spawn(function()
      corio.scope(function(inner)
        inner:cancel()
        while turns < 3 and spins < cap do
          spins = spins + 1
          local ok, err = pcall(swallow)
          assert(not ok and corio.is_cancelled(err),
            "the checkpoint did not raise Cancelled: " .. tostring(err))
        end
        seen = turns
      end)
    end)
    s:spawn(function()
      for _ = 1, 3 do corio.yield(); turns = turns + 1 end
    end)
  end)
  return seen, spins
end

describe("a cancelled checkpoint in a loop (rule 15)", function()
  local cap = 100000

  it("corio.sleep lets the other tasks run", function()
    local turns, spins = starves(function() corio.sleep(1) end, cap)
    assert.equal(3, turns)
    assert.is_true(spins < cap)
  end)

  it("corio.yield lets the other tasks run", function()
    local turns, spins = starves(corio.yield, cap)
    assert.equal(3, turns)
    assert.is_true(spins < cap)
  end)

  it("semaphore acquire, channel recv and task join let the others run", function()
    local sem, ch = corio.semaphore(0), corio.channel(0)
    local t = corio.spawn(function() corio.sleep(3600) end)
    for _, f in ipairs({
      function() sem:acquire() end,
      function() ch:recv() end,
      function() t:join() end,
    }) do
      local turns, spins = starves(f, cap)
      assert.equal(3, turns)
      assert.is_true(spins < cap)
    end
    t:cancel()
  end)

  it("a timer still fires while a task swallows Cancelled", function()
    local fired, fired_in_loop = false, false
    corio.scope(function(s)
      s:spawn(function()
        corio.sleep(0.01)
        fired = true
      end)
      s:spawn(function()
        corio.scope(function(inner)
          inner:cancel()
          local t0 = corio.now()
          while not fired and corio.now() - t0 < 2 do
            pcall(corio.sleep, 1)
          end
          fired_in_loop = fired
        end)
      end)
    end)
    assert.is_true(fired_in_loop)
  end)

  it("still raises Cancelled at every checkpoint, yielding or not (rule 4)", function()
    local raised = 0
    corio.scope(function(inner)
      inner:cancel()
      for _ = 1, 1000 do
        local ok, err = pcall(corio.yield)
        if not ok and corio.is_cancelled(err) then raised = raised + 1 end
        ok, err = pcall(corio.sleep, 0)
        if not ok and corio.is_cancelled(err) then raised = raised + 1 end
      end
    end)
    assert.equal(2000, raised)
  end)

  it("inside a C call boundary it raises at once (no yield is possible)", function()
    local raised = 0
    corio.scope(function(inner)
      inner:cancel()
      local t = {}
      for i = 1, 200 do t[i] = 201 - i end
      table.sort(t, function(a, b)
        local ok, err = pcall(corio.sleep, 0)
        if not ok and corio.is_cancelled(err) then raised = raised + 1 end
        return a < b
      end)
      assert.equal(1, t[1])
    end)
    assert.is_true(raised > 200)
  end)
end)
