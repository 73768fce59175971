-- timer_stress_spec.lua: thousands of sleeps and deadlines on the virtual
-- clock (corio.testing.autojump), many on the same instant, with random
-- cancels taking timers out of the middle of the heap:
--   * a sleep ends exactly at its deadline, never before, never later;
--   * sleeps due at the same instant end in the order they were armed;
--   * a move_on_after deadline cuts its body exactly at its deadline;
--   * a cancelled sleeper ends at once, and its timer fires for nobody.
-- Seeds are fixed; STRESS_SEEDS=n runs n more.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local lcg = helpers.lcg
local testing = require("corio.testing")

local function run_seed(seed)
  local rand = lcg(seed)
  testing.autojump(function()
    local t0 = corio.now()
    local order = {}        -- wake order of sleeps per deadline
    local armed = {}        -- arming order per deadline
    local tasks = {}
    local cancelled = {}
    corio.scope(function(s)
      for i = 1, 1500 do
        local kind = rand(10)
        tasks[i] = s:spawn(function()
          -- deadlines on a coarse grid, so many share an instant
          local d = rand(50) * 0.01
          if kind <= 6 then
            local key = string.format("%.2f", d)
            armed[key] = armed[key] or {}
            local a = armed[key]
            a[#a + 1] = i
            local ok, err = pcall(corio.sleep, d)
            local dt = corio.now() - t0
            if ok then
              assert(math.abs(dt - d) < 1e-6,
                ("sleep(%g) ended at %.9f"):format(d, dt))
              order[key] = order[key] or {}
              local o = order[key]
              o[#o + 1] = i
            else
              assert(corio.is_cancelled(err), tostring(err))
              assert(cancelled[i], "a sleep ended with Cancelled nobody asked for")
              for k, v in ipairs(a) do
                if v == i then table.remove(a, k) break end
              end
            end
          elseif kind <= 8 then
            local cut = corio.move_on_after(d, function() corio.sleep(10) end)
            if not cancelled[i] then
              assert(cut == false, "the body ran to its end")
              assert(math.abs(corio.now() - t0 - d) < 1e-6,
                ("move_on_after(%g) cut at %.9f"):format(d, corio.now() - t0))
            end
          else
            -- cancel some other task, at some instant
            corio.sleep(d)
            local j = rand(1500)
            if tasks[j] and tasks[j]:status() ~= "done" then
              cancelled[j] = true
              tasks[j]:cancel()
            end
          end
        end)
      end
    end)
    -- equal deadlines: the sleeps that were not cancelled ended in the
    -- order they were armed
    local nkeys = 0
    for key, a in pairs(armed) do
      nkeys = nkeys + 1
      assert.same(a, order[key] or {}, "deadline " .. key .. " fired out of order")
    end
    assert(nkeys > 20, "few distinct deadlines")
    assert(corio.now() - t0 <= 0.5 + 1e-6, "the run went past the last deadline")
  end)
end

describe("thousands of sleeps and deadlines on the virtual clock", function()
  for _, seed in ipairs(helpers.stress_seeds { 1, 2, 3 }) do
    it("seed " .. seed .. ": every timer fires exactly, in order, and cancels take them out",
      function()
        helpers.no_tasks_left(run_seed, seed)
      end)
  end
end)
