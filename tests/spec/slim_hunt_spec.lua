-- slim_hunt_spec.lua: a hunt of the state the 144-byte Task record moved
-- out of the record (the side record by slot: joiners, a task's own errors
-- and defers, the checkpoint count; root scopes' owners by container_of;
-- cancel propagation without per-scope links; interned spawn sites),
-- through the public API: slots and side entries reused by new tasks,
-- joiners cancelled while waiting, failures with failing defers, deep
-- trees, spawn sites of many lines and of load()ed chunks of one name, and
-- a random generator of waves of tasks that reuse the slots of the last.

local corio = require("corio")
local core = require("corio.core")
local testing = require("corio.testing")
local helpers = require("tests.spec.helpers")
local lcg = helpers.lcg

local function values(e)
  local out = {}
  for _, x in ipairs(e.errors or { e }) do
    out[#out + 1] = type(x) == "table" and tostring(x.value) or tostring(x)
  end
  table.sort(out)
  return table.concat(out, ",")
end

describe("slim task record hunt", function()
  it("a slot's next task starts with no joiners, errors, defers or count",
    function()
      for round = 1, 3 do
        -- a task with all of it: joiners, a failure, failing defers, a
        -- checkpoint count
        local target
        local ok, err = pcall(corio.scope, function(s)
          local ev = corio.event()
          target = s:spawn(function()
            core.checkpoints()
            for _ = 1, 5 do corio.yield() end
            corio.defer(function() error("d" .. round, 0) end)
            ev:wait()
            error("body" .. round, 0)
          end)
          for _ = 1, 3 do
            s:spawn(function() pcall(target.join, target) end)
          end
          corio.yield()
          ev:set()
        end)
        assert.is_false(ok)
        assert.equal("body" .. round .. ",d" .. round, values(err))
        -- the next tasks take the freed slots (the newest freed first)
        corio.scope(function(s)
          for _ = 1, 6 do
            s:spawn(function()
              assert.equal(0, core.checkpoints())
              corio.yield()
              assert.equal(1, core.checkpoints())
              return "fine"
            end)
          end
        end)
        local u = corio.spawn(function() return 1 end)
        assert.equal(1, u:join())
        assert.equal("done", u:status())
        -- a task in a reused slot fails alone, with its own error only
        local ok2, e2 = pcall(corio.scope, function(s)
          s:spawn(function() error("solo", 0) end)
        end)
        assert.is_false(ok2)
        assert.equal("solo", values(e2))
      end
    end)

  it("assert_checkpoints in tasks whose slots were reused", function()
    for _ = 1, 50 do
      corio.scope(function(s)
        s:spawn(function()
          testing.assert_checkpoints(function() corio.yield() end)
        end)
        s:spawn(function()
          local ok = pcall(testing.assert_checkpoints, function() end)
          assert.is_false(ok)
        end)
      end)
    end
  end)

  it("many joiners, some cancelled while waiting, the rest get the result",
    function()
      local got, cancelled = {}, 0
      corio.scope(function(s)
        local ev = corio.event()
        local target = s:spawn(function()
          ev:wait()
          return "r", 3
        end)
        local joiners = {}
        for i = 1, 200 do
          joiners[i] = s:spawn(function()
            local ok, a, b = pcall(target.join, target)
            if ok then got[#got + 1] = i .. a .. b
            else
              assert.equal("cancelled", a.kind)
              cancelled = cancelled + 1
            end
          end)
        end
        corio.yield()
        for i = 1, 200, 3 do joiners[i]:cancel() end
        corio.yield()
        for i = 2, 200, 3 do joiners[i]:cancel() end
        ev:set()
      end)
      assert.equal(134, cancelled)
      assert.equal(66, #got)
      for k, v in ipairs(got) do assert.equal((3 * k) .. "r3", v) end
    end)

  it("join of a task failing with several errors while its defers raise",
    function()
      local t
      local e1, e2
      pcall(corio.scope, function(outer)
        local ok = pcall(corio.scope, function(s)
          t = s:spawn(function()
            corio.defer(function() error("dA", 0) end)
            corio.scope(function(inner)
              corio.defer(function() error("dB", 0) end)
              inner:spawn(function() error("c1", 0) end)
              inner:spawn(function() error("c2", 0) end)
              corio.sleep(1)
            end)
          end)
          for i = 1, 2 do
            outer:spawn(function()
              local ok2, e = pcall(t.join, t)
              assert.is_false(ok2)
              if i == 1 then e1 = e else e2 = e end
            end)
          end
        end)
        assert.is_false(ok)
      end)
      assert.equal("failed", t:status())
      assert.equal("c1,c2,dA,dB", values(e1))
      assert.equal(values(e1), values(e2))
      local ok3, e3 = pcall(t.join, t)
      assert.is_false(ok3)
      assert.equal("c1,c2,dA,dB", values(e3))
    end)

  it("cancels a 1000-deep chain of scopes and of tasks", function()
    local depth = 1000
    local log = {}
    local ok, err = pcall(corio.move_on_after, 0.02, function()
      local function nest(d)
        if d == 0 then
          local ok2 = pcall(corio.sleep, 10)
          log[#log + 1] = ok2 and "slept" or "cancelled"
          return
        end
        corio.scope(function(s)
          if d % 2 == 0 then nest(d - 1)
          else s:spawn(nest, d - 1) end
        end)
      end
      nest(depth)
    end)
    assert.is_true(ok, tostring(err))
    assert.same({ "cancelled" }, log)
    -- task chain: each task spawns the next and waits in a sleep
    local n = 0
    local function chain(d)
      if d > 0 then corio.spawn(chain, d - 1) end
      local ok2 = pcall(corio.sleep, 10)
      if not ok2 then n = n + 1 end
    end
    corio.move_on_after(0.02, function()
      corio.scope(function(s) s:spawn(chain, depth) end)
    end)
    assert.equal(depth + 1, n)
  end)

  it("corio.tasks() on a 1000-deep task tree", function()
    local depth, seen = 1000, nil
    corio.scope(function(s)
      local ev, all = corio.event(), corio.event()
      local function chain(d)
        if d > 0 then corio.spawn(chain, d - 1) else all:set() end
        ev:wait()
      end
      s:spawn(chain, depth)
      all:wait()
      seen = #corio.tasks()
      ev:set()
    end)
    assert.is_true(seen >= depth + 1)
  end)

  it("a cancel wakes the tasks of a deep tree in depth-first order",
    function()
      local log = {}
      corio.scope(function(s)
        local ev = corio.event()
        local function node(name, d)
          return function()
            if d > 0 then
              corio.scope(function(s2)
                s2:spawn(node(name .. "a", d - 1))
                s2:spawn(node(name .. "b", d - 1))
                local ok = pcall(ev.wait, ev)
                log[#log + 1] = name .. (ok and "" or "!")
              end)
            else
              local ok = pcall(ev.wait, ev)
              log[#log + 1] = name .. (ok and "" or "!")
            end
          end
        end
        s:spawn(node("r", 2))
        for _ = 1, 5 do corio.yield() end
        s:cancel()
      end)
      -- the owner of a scope, then its tasks newest first, depth first
      assert.equal("r! rb! rbb! rba! ra! rab! raa!", table.concat(log, " "))
    end)

  it("a cancel reaches the tasks of scopes coroutines took with them",
    function()
      local log = {}
      corio.scope(function(outer)
        local ev = corio.event()
        local function blocked(name)
          return function()
            local ok = pcall(ev.wait, ev)
            log[#log + 1] = name .. (ok and "" or "!")
          end
        end
        outer:spawn(blocked("o1"))
        local gens = {}
        for g = 1, 3 do
          gens[g] = coroutine.wrap(function()
            corio.scope(function(s)
              s:spawn(blocked("g" .. g .. "a"))
              corio.scope(function(s2)
                s2:spawn(blocked("g" .. g .. "b"))
                coroutine.yield()
                local ok = pcall(ev.wait, ev)
                log[#log + 1] = "g" .. g .. "body" .. (ok and "" or "!")
              end)
            end)
          end)
          gens[g]()   -- parked: its scopes are off the task's chain
        end
        outer:spawn(blocked("o2"))
        corio.yield()
        outer:cancel()
        corio.shield(function() corio.sleep(0) end)   -- the woken run
        for g = 1, 3 do gens[g]() end
      end)
      -- the parked chains newest first (each: its tasks, then its inner
      -- scope's), then the scope's own tasks newest first
      assert.equal("g3a! g3b! g2a! g2b! g1a! g1b! o2! o1! "
        .. "g1body! g2body! g3body!", table.concat(log, " "))
    end)

  it("spawned_at for a function spawning from many lines", function()
    local here = debug.getinfo(1, "S").short_src
    local want, got = {}, {}
    corio.scope(function(s)
      local ev = corio.event()
      local tasks = {}
      local function spawn_at(i)
        -- the lines alternate: each spawn is on its own line
        if i % 4 == 0 then tasks[i] = s:spawn(ev.wait, ev)
        elseif i % 4 == 1 then tasks[i] = s:spawn(ev.wait, ev)
        elseif i % 4 == 2 then tasks[i] = s:spawn(ev.wait, ev)
        else tasks[i] = s:spawn(ev.wait, ev) end
      end
      local base = debug.getinfo(spawn_at, "S").linedefined
      for i = 1, 40 do
        spawn_at(i)
        tasks[i].name = "m" .. i
        want["m" .. i] = here .. ":" .. (base + 2 + (i % 4))
      end
      corio.yield()
      for _, e in ipairs(corio.tasks()) do
        if e.task.name:match("^m%d") then got[e.task.name] = e.spawned_at end
      end
      ev:set()
    end)
    assert.same(want, got)
  end)

  it("spawned_at for load()ed chunks of one name", function()
    local got = {}
    corio.scope(function(s)
      local ev = corio.event()
      for i = 1, 30 do
        -- each chunk spawns on line 1 + i % 3; all are named "=same"
        local src = ("\n"):rep(i % 3) .. "local s, ev = ... local t = s:spawn(ev.wait, ev) return t"
        local f = assert(load(src, "=same"))
        local t = f(s, ev)
        t.name = "l" .. i
        if i % 7 == 0 then collectgarbage() end
      end
      corio.yield()
      for _, e in ipairs(corio.tasks()) do
        if e.task.name:match("^l%d") then got[e.task.name] = e.spawned_at end
      end
      ev:set()
    end)
    for i = 1, 30 do
      assert.equal("same:" .. (1 + i % 3), got["l" .. i])
    end
  end)

  it("a failed task's traceback names its spawn site after slot reuse",
    function()
      for i = 1, 20 do
        local ok, e = pcall(corio.scope, function(s)
          if i % 2 == 0 then s:spawn(error, "even" .. i, 0)
          else s:spawn(error, "odd" .. i, 0) end
        end)
        assert.is_false(ok)
        local line = debug.getinfo(1, "l").currentline - (i % 2 == 0 and 4 or 3)
        assert.matches("spawned at [^\n]*slim_hunt_spec.lua:" .. line,
          tostring(e.traceback))
      end
    end)
end)

-- Waves of tasks: each wave's tasks end before the next is spawned, so the
-- next takes their slots and side entries. Each task follows a plan (a
-- result; or a failure, maybe with failing defers; or a cancel while
-- blocked) and some join others of their wave, some of them cancelled
-- while they wait. Every join must give the target's own outcome.
local function run_waves(seed)
  local rand = lcg(seed)
  for wave = 1, 6 do
    local n = 5 + rand(40)
    local plans, tasks = {}, {}
    local ok, err = pcall(corio.scope, function(s)
      local ev = corio.event()
      for i = 1, n do
        local p = { kind = rand(4), ndefer = rand(3) - 1, id = wave .. "." .. i }
        plans[i] = p
        tasks[i] = s:spawn(function()
          if rand(2) == 1 then core.checkpoints() end
          for k = 1, p.ndefer do
            if p.kind == 2 then
              corio.defer(function() error(p.id .. "d" .. k, 0) end)
            else
              corio.defer(function() end)
            end
          end
          if p.kind == 4 and i > 1 then   -- a joiner of an earlier task
            p.target = rand(i - 1)
            local t = tasks[p.target]
            p.cancel_me = rand(3) == 1
            local r = table.pack(pcall(t.join, t))
            p.joined = r
            return "joined"
          end
          ev:wait()
          if p.kind == 2 then error(p.id, 0) end
          return p.id
        end)
        if p.kind == 3 then p.cancelled = true end
      end
      corio.yield()
      for i = 1, n do
        local p = plans[i]
        if p.cancelled or p.cancel_me then tasks[i]:cancel() end
      end
      corio.yield()
      ev:set()
    end)
    -- outcome of each task, and what its joiners saw
    local failures = {}
    for i = 1, n do
      local p, t = plans[i], tasks[i]
      local st = t:status()
      if p.kind == 2 then
        if st == "failed" then
          failures[#failures + 1] = p.id
          for k = 1, p.ndefer do failures[#failures + 1] = p.id .. "d" .. k end
        else
          assert(st == "cancelled", p.id .. " " .. st)
        end
      elseif p.cancelled then
        assert(st == "cancelled", p.id .. " " .. st)
      end
    end
    for i = 1, n do
      local p, st = plans[i], tasks[i]:status()
      if p.joined then
        local r, tp = p.joined, plans[p.target]
        local ts = tasks[p.target]:status()
        if r[1] then
          assert(ts == "done", p.id .. " joined " .. tp.id .. " " .. ts)
          assert(r[2] == tp.id or r[2] == "joined",
            p.id .. " got " .. tostring(r[2]) .. " from " .. tp.id)
        elseif r[2].kind == "cancelled" then
          -- its own cancel, or the target's
          -- (a failure in the wave cancels the wave's scope: rule 2)
          assert(p.cancel_me or ts == "cancelled" or st == "cancelled"
            or #failures > 0,
            p.id .. ": a Cancelled from nowhere")
        else
          assert(ts == "failed", p.id .. " joined " .. tp.id .. ": " .. ts)
          local v = r[2].errors and r[2].errors[1] or r[2]
          assert(tostring(v.value) == tp.id,
            p.id .. " got " .. tostring(v.value) .. " of " .. tp.id)
        end
      end
    end
    if #failures > 0 then
      assert(not ok, "the wave had failures: " .. table.concat(failures, ","))
      local seen = {}
      for _, x in ipairs(err.errors or { err }) do
        if type(x) == "table" and type(x.value) == "string" then
          seen[x.value] = true
        end
      end
      for _, f in ipairs(failures) do
        assert(seen[f], "missing error " .. f .. " in " .. values(err))
      end
    end
  end
end

describe("slot reuse stress", function()
  local seeds = tonumber(os.getenv("STRESS_SEEDS") or "0")
  for seed = 1, 12 + seeds do
    it("waves, seed " .. seed, function() run_waves(seed) end)
  end
end)
