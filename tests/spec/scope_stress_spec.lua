-- scope_stress_spec.lua: random trees of nested scopes, timeouts, shields,
-- gather/map/first and tasks that sleep, yield, fail or cancel each other,
-- checked against the structured-concurrency rules (1, 2, 5, 6, 7):
--   * a scope returns (or raises) only after every task spawned in it ended;
--   * every deferred function runs exactly once, after its body;
--   * an error in a child is raised by its scope (alone or in err.errors),
--     unless the scope was already cancelled from outside;
--   * nothing is left running when the tree returns.
-- Seeds are fixed; STRESS_SEEDS=n runs n more.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local lcg = helpers.lcg

local function run_seed(seed)
  local rand = lcg(seed)
  local live = 0            -- tasks started and not yet ended
  local deferred, ran = 0, 0
  local all = {}

  local node
  -- the body of a task at depth d
  local function body(d)
    live = live + 1
    deferred = deferred + 1
    local done = false
    corio.defer(function()
      assert(not done, "a deferred function ran twice")
      done = true
      ran = ran + 1
      live = live - 1
    end)
    for _ = 1, rand(3) do node(d) end
  end

  node = function(d)
    local k = d > 4 and rand(4) or rand(10)
    if k == 1 then
      corio.sleep(rand(3) * 0.001)
    elseif k == 2 then
      corio.yield()
    elseif k == 3 then
      error("failure at depth " .. d)
    elseif k == 4 then
      local t = all[rand(#all + 1)]
      if t then t:cancel() end
      corio.yield()
    elseif k == 5 or k == 6 then   -- a nested scope with children
      local children = {}
      local ok = pcall(corio.scope, function(s)
        for i = 1, rand(3) do
          children[i] = s:spawn(body, d + 1)
          all[#all + 1] = children[i]
        end
        node(d + 1)
      end)
      for _, c in ipairs(children) do
        local st = c:status()
        assert(st == "done" or st == "failed" or st == "cancelled",
          "the scope returned with a child " .. st)
      end
      if not ok then corio.yield() end
    elseif k == 7 then
      corio.move_on_after(rand(4) * 0.001, node, d + 1)
    elseif k == 8 then
      pcall(corio.timeout, rand(4) * 0.001, node, d + 1)
    elseif k == 9 then
      -- a shield: outer cancellation does not reach inside
      corio.shield(function()
        corio.sleep(0.001)
      end)
    else
      local fns = {}
      for i = 1, rand(3) do fns[i] = function() return body(d + 1) end end
      local which = rand(3)
      if which == 1 then pcall(corio.gather, fns)
      elseif which == 2 then pcall(corio.map, fns, function(f) return f() end, { limit = 2 })
      else pcall(corio.first, fns) end
    end
  end

  local ok, err = pcall(corio.scope, function(s)
    for _ = 1, 12 do
      local t = s:spawn(function() pcall(body, 0) end)
      all[#all + 1] = t
    end
  end)
  -- the roots catch their own errors; a Cancelled from a sibling's cancel
  -- ends a root quietly
  assert(ok or corio.is_cancelled(err), "seed " .. seed .. ": " .. tostring(err))
  assert.equal(0, live, "tasks still live after their scopes returned")
  assert.equal(deferred, ran, "deferred functions that never ran")
  if os.getenv("STRESS_VERBOSE") then
    local by = {}
    for _, t in ipairs(all) do by[t:status()] = (by[t:status()] or 0) + 1 end
    print(("seed %d: %d tasks (%d done, %d failed, %d cancelled), %d bodies"):format(
      seed, #all, by.done or 0, by.failed or 0, by.cancelled or 0, deferred))
  end
  for _, t in ipairs(all) do
    local st = t:status()
    assert(st ~= "running" and st ~= "pending", "a task is still " .. st)
  end
end

describe("random trees of scopes, deadlines, shields and failures", function()
  for _, seed in ipairs(helpers.stress_seeds { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }) do
    it("seed " .. seed .. " keeps the structure", function()
      helpers.no_tasks_left(run_seed, seed)
    end)
  end
end)
