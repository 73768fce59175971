-- stress_spec.lua: randomized runs of many tasks doing random operations on
-- shared semaphores, locks, events and channels, while other tasks cancel
-- them, scopes time out and deadlines fire, checked against invariants that
-- any interleaving must keep (rules 3, 7, 8):
--   * a semaphore's permits are conserved: never more than the initial
--     count held or available, all of them back at the end;
--   * a lock has at most one holder, and only its holder releases it;
--   * every message sent on a channel is received at most once, and a
--     sender whose send returned has handed its message over (received,
--     or still buffered when the channel is drained at the end);
--   * a cancelled or timed-out acquire takes nothing;
--   * when the run ends, nothing is left running or blocked.
-- Seeds are fixed so a failure reproduces; STRESS_SEEDS=n runs n more.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local lcg = helpers.lcg

local function run_seed(seed, ntasks, nsteps)
  local rand = lcg(seed)
  local SEM_N = 3
  local sem = corio.semaphore(SEM_N)
  local lock = corio.lock()
  local ev = corio.event()
  local ch = corio.channel(rand(3) - 1)  -- capacity 0, 1 or 2
  local held_sem, lock_holder = 0, nil
  local sent, received = {}, {}
  local next_msg = 0
  local tasks = {}

  -- A release hands its permit straight to the oldest waiter, which counts
  -- it only when it runs: while that is pending, held + available is one
  -- short. So during the run no permit may appear from nowhere, and at
  -- the end none may be missing.
  local function check_sem()
    assert(held_sem + sem.available <= SEM_N and held_sem <= SEM_N,
      ("permits made from nothing: %d held + %d available > %d")
        :format(held_sem, sem.available, SEM_N))
  end

  local ops = {
    function() -- semaphore
      sem:acquire()
      held_sem = held_sem + 1
      check_sem()
      corio.defer(function()
        held_sem = held_sem - 1
        sem:release()
      end)
      if rand(2) == 1 then corio.yield() end
    end,
    function() -- lock, held across a suspension
      lock:acquire()
      assert(lock_holder == nil, "two holders of one lock")
      local me = corio.current()
      lock_holder = me
      corio.defer(function()
        assert(lock_holder == me, "the lock changed hands while held")
        lock_holder = nil
        lock:release()
      end)
      corio.sleep(rand(3) == 1 and 0.0005 or 0)
    end,
    function() -- send a numbered message
      next_msg = next_msg + 1
      local m = next_msg
      ch:send(m)
      sent[m] = true
    end,
    function() -- receive one
      local m = ch:recv()
      if m ~= nil then
        assert(not received[m], "message " .. tostring(m) .. " received twice")
        received[m] = true
      end
    end,
    function() -- event
      if rand(3) == 1 then ev:set() elseif rand(3) == 1 then ev:clear() end
      corio.move_on_after(0.001, ev.wait, ev)
    end,
    function() -- a deadline around a blocking acquire
      corio.move_on_after(rand(2) == 1 and 0 or 0.0005, function()
        sem:acquire()
        held_sem = held_sem + 1
        check_sem()
        held_sem = held_sem - 1
        sem:release()
      end)
    end,
    function() -- cancel somebody
      local victim = tasks[rand(#tasks)]
      if victim then victim:cancel() end
    end,
    function() -- a child scope with a failing child
      pcall(corio.scope, function(s)
        s:spawn(function() corio.yield(); error("child failure") end)
        s:spawn(function() lock:acquire(); lock_holder = corio.current()
          corio.defer(function() lock_holder = nil; lock:release() end)
          corio.sleep(0.0005) end)
      end)
    end,
    function() corio.sleep(rand(4) == 1 and 0.0003 or 0) end,
  }

  local ok, err = pcall(corio.scope, function(s)
    for i = 1, ntasks do
      tasks[i] = s:spawn(function()
        for _ = 1, nsteps do
          -- each step in its own cancellable block: a cancel ends the task
          -- (level-triggered), a timeout ends the step
          corio.move_on_after(0.01, function() ops[rand(#ops)]() end)
        end
      end)
    end
  end)
  -- a task cancelled by another ends quietly and child failures are caught
  -- in the step: only a failed check inside a task fails the scope
  assert(ok, "seed " .. seed .. ": " .. tostring(err))
  -- drain what is still buffered: those sends completed too
  while true do
    local got, m = ch:try_recv()
    if not got then break end
    assert(not received[m], "message " .. tostring(m) .. " received twice")
    received[m] = true
  end
  for m in pairs(sent) do
    assert(received[m], "seed " .. seed .. ": message " .. m .. " was sent but lost")
  end
  -- the run did what it is for: messages flowed, tasks were cancelled
  local nrecv, ncancelled = 0, 0
  for _ in pairs(received) do nrecv = nrecv + 1 end
  for _, t in ipairs(tasks) do
    if t:status() == "cancelled" then ncancelled = ncancelled + 1 end
  end
  assert(nrecv > 0 and ncancelled > 0,
    ("seed %d exercised little: %d messages, %d tasks cancelled")
      :format(seed, nrecv, ncancelled))
  if os.getenv("STRESS_VERBOSE") then
    print(("seed %d: %d messages, %d of %d tasks cancelled"):format(
      seed, nrecv, ncancelled, #tasks))
  end
  assert.equal(0, held_sem)
  assert.equal(SEM_N, sem.available, "seed " .. seed .. ": permits lost")
  assert.is_false(lock:locked())
  assert.is_nil(lock_holder)
end

-- Producers, consumers, a closer and a canceller on one channel: every
-- send that returned is received exactly once (buffered values survive
-- close and are drained by the consumers' iter); a send that raised
-- (closed or cancelled) delivered nothing.
local function run_channel_seed(seed)
  local rand = lcg(seed)
  local ch = corio.channel(rand(3) - 1)
  local delivered, received, failed = {}, {}, {}
  local workers = {}
  corio.scope(function(s)
    for p = 1, 4 do
      workers[#workers + 1] = s:spawn(function()
        for i = 1, 40 do
          local m = p * 1000 + i
          local ok, err = pcall(ch.send, ch, m)
          if ok then
            delivered[m] = true
          else
            failed[m] = true
            local e = tostring(err)
            assert(corio.is_cancelled(err) or e:find("closed", 1, true), e)
            if not corio.is_cancelled(err) then return end
            corio.yield()  -- cancelled: raises again and ends the task
          end
          if rand(4) == 1 then corio.yield() end
        end
      end)
    end
    for _ = 1, 3 do
      workers[#workers + 1] = s:spawn(function()
        for m in ch:iter() do
          assert(not received[m], "message " .. m .. " received twice")
          received[m] = true
          if rand(3) == 1 then corio.sleep(0) end
        end
      end)
    end
    s:spawn(function()   -- cancel some producers and consumers
      for _ = 1, 3 do
        for _ = 1, rand(20) do corio.yield() end
        workers[rand(#workers)]:cancel()
      end
    end)
    s:spawn(function()   -- close at some point
      for _ = 1, rand(60) do corio.yield() end
      ch:close()
    end)
  end)
  -- consumers may all have been cancelled: drain what is left
  while true do
    local v = ch:recv()
    if v == nil then break end
    assert(not received[v], "message " .. v .. " received twice")
    received[v] = true
  end
  for m in pairs(delivered) do
    assert(received[m], ("seed %d: message %d was sent but lost"):format(seed, m))
  end
  for m in pairs(received) do
    assert(delivered[m] or not failed[m],
      ("seed %d: message %d was received though its send failed"):format(seed, m))
  end
end

-- Locks whose owners sometimes end while holding them: such a lock is
-- broken for good (rule 8), so its waiters and every later acquire get
-- kind "broken"; a lock nobody abandoned keeps one holder at a time. No
-- waiter is left hanging.
local function run_lock_seed(seed)
  local rand = lcg(seed)
  local locks, holder, abandoned = {}, {}, {}
  for i = 1, 4 do locks[i] = corio.lock() end
  corio.scope(function(s)
    for _ = 1, 30 do
      s:spawn(function()
        for _ = 1, 5 do
          local k = rand(#locks)
          local ok, err = pcall(locks[k].acquire, locks[k])
          if ok then
            assert(not abandoned[k], "a broken lock was acquired")
            assert(holder[k] == nil, "two holders of one lock")
            holder[k] = corio.current()
            corio.sleep(rand(2) == 1 and 0.0005 or 0)
            if rand(40) == 1 then
              abandoned[k] = true   -- the task ends holding it
              return
            end
            holder[k] = nil
            locks[k]:release()
          else
            assert(err.kind == "broken", tostring(err))
            assert(abandoned[k], "broken, but its owner did not abandon it")
          end
        end
      end)
    end
  end)
  if os.getenv("STRESS_VERBOSE") then
    local n = 0
    for k in pairs(abandoned) do n = n + 1 end
    print(("seed %d: %d of %d locks abandoned"):format(seed, n, #locks))
  end
  for k, lock in ipairs(locks) do
    if abandoned[k] then
      local ok, err = pcall(lock.acquire, lock)
      assert(not ok and err.kind == "broken", "an abandoned lock is not broken")
    else
      assert.is_false(lock:locked())
    end
  end
end

describe("randomized stress of sync objects under cancellation", function()
  for _, seed in ipairs(helpers.stress_seeds { 1, 2, 3, 4, 5, 6, 7, 8 }) do
    it("seed " .. seed .. " keeps every invariant", function()
      helpers.no_tasks_left(run_seed, seed, 24, 30)
    end)
    it("seed " .. seed .. ": locks abandoned by their owners break, for good", function()
      helpers.no_tasks_left(run_lock_seed, seed)
    end)
    it("seed " .. seed .. ": a channel under close and cancel loses nothing", function()
      helpers.no_tasks_left(run_channel_seed, seed)
    end)
  end
end)
