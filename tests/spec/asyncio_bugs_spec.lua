-- asyncio_bugs_spec.lua: asyncio's edge-triggered, counter-based
-- cancellation (Task.cancel / uncancel, wait_for, TaskGroup) gave a long
-- list of bugs in CPython. Each case here is the Lua equivalent of one of
-- them (the issue named in the title), run against corio's level-triggered
-- cancel scopes, and asserts what SPEC rules 1-15, docs/semantics.md and
-- docs/cancellation.md say corio does instead. Where corio differs from
-- asyncio on purpose, docs/coming-from-python.md ("Cancellation: what
-- asyncio gets wrong") says so.

local corio = require("corio")
local testing = require("corio.testing")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch
local outcome = helpers.outcome

-- a watchdog for anything that could hang on a broken runtime
local function guard(fn, ...)
  return corio.timeout(20, fn, ...)
end

-- every other task blocked (the waiters are queued)
local function settle()
  testing.wait_all_tasks_blocked()
end

describe("asyncio bugs: wait_for / timeout races", function()
  it("gh-86296 (bpo-42130): an outer cancel that lands as the inner wait completes is not swallowed", function()
    guard(function()
      -- set, then cancel, in one step: the wait completed first (rule 7)
      local ev = corio.event()
      local log = {}
      local t
      corio.scope(function(s)
        t = s:spawn(function()
          local r = { corio.timeout(5, function() ev:wait(); return "inner done" end) }
          log[#log + 1] = r[1]            -- the completed result is returned
          log[#log + 1] = outcome(pcall(corio.yield))
          log[#log + 1] = outcome(pcall(corio.sleep, 0))
          corio.yield()   -- not caught: the task ends "cancelled"
        end)
        settle()
        ev:set()
        t:cancel()
      end)
      assert.same({ "inner done", "cancelled", "cancelled" }, log)
      assert.equal("cancelled", t:status())
      assert.equal("cancelled", outcome(pcall(t.join, t)))

      -- cancel, then set: the wait raises Cancelled, and timeout passes
      -- it through unchanged (no TimeoutError, no result)
      ev:clear()
      local got
      corio.scope(function(s)
        t = s:spawn(function()
          got = outcome(pcall(corio.timeout, 5, ev.wait, ev))
          corio.yield()   -- still cancelled: the task ends "cancelled"
        end)
        settle()
        t:cancel()
        ev:set()
      end)
      assert.equal("cancelled", got)
      assert.equal("cancelled", t:status())
    end)
  end)

  it("bpo-37658: a value handed over as the receiver is cancelled is returned to it, not lost or duplicated", function()
    guard(function()
      local ch = corio.channel()
      local got, after
      local t
      corio.scope(function(s)
        t = s:spawn(function()
          got = corio.timeout(5, ch.recv, ch)
          after = outcome(pcall(corio.yield))
          corio.yield()
        end)
        settle()
        assert.is_true(ch:try_send("conn"))  -- hand-off to the waiting receiver
        t:cancel()
      end)
      assert.equal("conn", got)
      assert.equal("cancelled", after)
      assert.equal("cancelled", t:status())
      assert.is_false((ch:try_recv()))       -- not left in the channel as well
    end)
  end)

  it("gh-86296 with a deadline: a lock handed over as the waiter's deadline fires is held or not taken, never leaked", function()
    for _, delay in ipairs({ 0.999, 1, 1.001 }) do
      testing.autojump(function()
        local lock = corio.lock()
        local res
        corio.scope(function(s)
          s:spawn(function()
            lock:acquire()
            corio.sleep(delay)
            lock:release()
          end)
          s:spawn(function()
            res = { corio.move_on_after(1, function()
              return lock:with(function() return "locked" end)
            end) }
          end)
        end)
        assert.is_false(lock:locked(), "delay " .. delay)
        -- the waiter either got it in time, or moved on and took nothing
        if delay < 1 then assert.same({ true, "locked" }, res) end
        if delay > 1 then assert.same({ false }, res) end
        -- usable afterwards
        assert.equal("again", lock:with(function() return "again" end))
      end)
    end
  end)

  it("bpo-32751: timeout returns only after the body's cleanup and children ended", function()
    testing.autojump(function()
      local cleaned, child_cleaned = false, false
      local t0 = corio.now()
      local err = catch(corio.timeout, 1, function()
        corio.spawn(function()
          corio.defer(function()
            corio.shield(corio.sleep, 2)
            child_cleaned = true
          end)
          corio.sleep(10)
        end)
        corio.defer(function()
          corio.shield(corio.sleep, 1)
          cleaned = true
        end)
        corio.sleep(10)
      end)
      assert.equal("timeout", err.kind)
      assert.is_true(cleaned)
      assert.is_true(child_cleaned)
      -- the child's cleanup (2 s) ran alongside; the body's (1 s) after it
      assert.near(4, corio.now() - t0, 1e-6)
    end)
  end)

  it("bpo-33638: a lock taken in a timed-out body is released before the TimeoutError is seen", function()
    testing.autojump(function()
      local lock = corio.lock()
      local err = catch(corio.timeout, 1, function()
        lock:with(function() corio.sleep(10) end)
      end)
      assert.equal("timeout", err.kind)
      assert.is_false(lock:locked())
    end)
  end)

  it("wait_for(timeout=0): a body that finishes without a checkpoint returns its value", function()
    assert.same({ 42, "x" }, { corio.timeout(0, function() return 42, "x" end) })
    assert.same({ true, 42 }, { corio.move_on_after(0, function() return 42 end) })
    -- and one with a checkpoint is cut there
    assert.equal("timeout", catch(corio.timeout, 0, corio.yield).kind)
  end)

  it("bpo-42130 (an inner call that suppresses the cancel): the body cannot block after it, and its value is returned", function()
    testing.autojump(function()
      local seen = {}
      local r = { corio.timeout(1, function()
        seen[#seen + 1] = outcome(pcall(corio.sleep, 10))
        seen[#seen + 1] = outcome(pcall(corio.sleep, 10))   -- level-triggered
        seen[#seen + 1] = outcome(pcall(corio.yield))
        return "swallowed"
      end) }
      assert.same({ "cancelled", "cancelled", "cancelled" }, seen)
      assert.same({ "swallowed" }, r)
    end)
  end)

  it("a deadline that passes as the body finishes neither discards the result nor leaks a cancel out", function()
    -- asyncio.timeout: when the deadline's task.cancel() is pending as the
    -- body completes, __aexit__ lets the result through, but the cancel
    -- stays requested and hits the task's next await, outside the timeout.
    -- In corio the deadline belongs to the scope, which is gone
    local r = { corio.timeout(0.02, function()
      helpers.hold(0.05)
      return "finished"
    end) }
    assert.same({ "finished" }, r)
    assert.is_true(pcall(corio.yield))
    assert.is_true(pcall(corio.sleep, 0.001))
    -- the same where the deadline and the completing wait race on the clock
    for _, d in ipairs({ 0.999, 1, 1.001 }) do
      testing.autojump(function()
        local ev = corio.event()
        corio.spawn(function() corio.sleep(d); ev:set() end)
        local done = corio.move_on_after(1, ev.wait, ev)
        if d ~= 1 then assert.equal(d < 1, done, "d = " .. d) end
        assert.is_true(pcall(corio.yield), "d = " .. d)
        assert.is_true(pcall(corio.sleep, 1), "d = " .. d)
      end)
    end
  end)

  it("gh-155433: an inner scope's own cancel does not absorb an outer deadline", function()
    testing.autojump(function()
      local worker_cleaned = false
      local t0 = corio.now()
      local err = catch(corio.timeout, 0.5, function()
        corio.scope(function(s)
          s:spawn(function()
            corio.defer(function()
              corio.shield(corio.sleep, 1)   -- the deadline passes meanwhile
              worker_cleaned = true
            end)
            corio.sleep(3600)
          end)
          corio.sleep(0.1)
          s:cancel()
        end)
        corio.sleep(0)   -- the first checkpoint after the scope sees the deadline
        error("not reached")
      end)
      assert.equal("timeout", err.kind)
      assert.is_true(worker_cleaned)
      assert.near(1.1, corio.now() - t0, 1e-6)
    end)
  end)

  it("gh-116720: nested scopes cancelled together: the outer one absorbs, the inner passes Cancelled on", function()
    guard(function()
      local after_inner = false
      local inner_scope, outer_scope
      local r = { corio.scope(function(outer)
        outer_scope = outer
        corio.scope(function(inner)
          inner_scope = inner
          inner:cancel()
          outer:cancel()
          corio.sleep(1)
        end)
        after_inner = true    -- the outer cancel is still pending here
        return "outer body returned"
      end) }
      assert.is_false(after_inner)
      assert.same({}, r)
      assert.is_true(outer_scope.cancel_caught)
      assert.is_false(inner_scope.cancel_caught)
      -- and when the outer one is cancelled after the inner one absorbed
      -- its own cancel, the next checkpoint still raises
      local seen
      corio.scope(function(outer)
        corio.scope(function(inner) inner:cancel(); corio.sleep(1) end)
        outer:cancel()
        seen = outcome(pcall(corio.yield))
      end)
      assert.equal("cancelled", seen)
    end)
  end)

  it("equal deadlines: the outer scope catches, the inner timeout raises no TimeoutError", function()
    testing.autojump(function()
      local inner
      local r = corio.move_on_after(1, function()
        local ok, e = pcall(corio.timeout, 1, corio.sleep, 10)
        inner = outcome(ok, e)
        error(e, 0)
      end)
      assert.equal("cancelled", inner)
      assert.is_false(r)
      -- the same with the outer deadline earlier by a hair: the outer catches
      r = corio.move_on_after(1, function()
        local ok, e = pcall(corio.timeout, 1 + 1e-9, corio.sleep, 10)
        inner = outcome(ok, e)
        error(e, 0)
      end)
      assert.equal("cancelled", inner)
      assert.is_false(r)
    end)
  end)

  it("a task cancel and its inner timeout's deadline together: the task ends cancelled, not with TimeoutError", function()
    testing.autojump(function()
      local inner
      local t
      corio.scope(function(s)
        t = s:spawn(function()
          local ok, e = pcall(corio.timeout, 1, function()
            corio.shield(corio.sleep, 2)   -- both cancels arrive meanwhile
            corio.yield()
          end)
          inner = outcome(ok, e)
          error(e, 0)
        end)
        corio.sleep(1.5)
        t:cancel()
      end)
      assert.equal("cancelled", inner)
      assert.equal("cancelled", t:status())
    end)
  end)

  it("the deadline fires while the body is in its cleanup: cleanup in a shield finishes, then TimeoutError", function()
    testing.autojump(function()
      local log = {}
      local t0 = corio.now()
      local err = catch(corio.timeout, 1, function()
        corio.defer(function()
          log[#log + 1] = "cleanup start " .. (corio.now() - t0)
          corio.shield(corio.sleep, 2)       -- crosses the deadline
          log[#log + 1] = "cleanup end"
          corio.yield()                      -- unshielded: cut
          log[#log + 1] = "not reached"
        end)
        corio.sleep(0.5)
      end)
      assert.equal("timeout", err.kind)
      assert.same({ "cleanup start 0.5", "cleanup end" }, log)
      assert.near(2.5, corio.now() - t0, 1e-6)
    end)
  end)

  it("trio's finally + sleep: an unshielded blocking call in cleanup after the deadline makes it a timeout", function()
    testing.autojump(function()
      local r = corio.move_on_after(1, function()
        corio.defer(function() corio.sleep(2) end)   -- cut at the deadline
        return "body done"
      end)
      assert.is_false(r)
      local err = catch(corio.timeout, 1, function()
        corio.defer(function() corio.sleep(2) end)
      end)
      assert.equal("timeout", err.kind)
    end)
  end)

  it("no reschedule: an inner scope cannot extend the outer deadline", function()
    testing.autojump(function()
      local t0 = corio.now()
      local r = corio.move_on_after(1, function()
        corio.timeout(10, corio.sleep, 5)   -- a later deadline inside
      end)
      assert.is_false(r)
      assert.near(1, corio.now() - t0, 1e-6)
    end)
  end)
end)

describe("asyncio bugs: semaphore, lock, event, channel", function()
  it("python/asyncio#270 (gh-90155): a woken waiter cancelled before it runs does not strand the next one", function()
    guard(function()
      local sem = corio.semaphore(1)
      local got = {}
      corio.scope(function(s)
        sem:acquire()
        local a = s:spawn(function()
          sem:with(function() got[#got + 1] = "a" end)
        end)
        s:spawn(function()
          sem:with(function() got[#got + 1] = "b" end)
        end)
        settle()
        sem:release()   -- handed to a
        a:cancel()      -- before a ran
      end)
      -- a kept the permit it was handed (its acquire had completed), ran
      -- its body and gave it back; b was not stranded
      assert.same({ "a", "b" }, got)
      assert.equal(1, sem.available)
    end)
  end)

  it("anyio#1145: a release after a waiter's cancel skips it: the next waiter gets the permit", function()
    guard(function()
      local sem = corio.semaphore(0)
      local res = {}
      corio.scope(function(s)
        local a = s:spawn(function() res.a = outcome(pcall(sem.acquire, sem)) end)
        s:spawn(function() sem:acquire(); res.b = "ok" end)
        settle()
        a:cancel()      -- a is still queued: it has not run since
        sem:release()   -- must go to b, not to the cancelled a
        assert.equal(0, sem.available)
      end)
      assert.same({ a = "cancelled", b = "ok" }, res)
      assert.equal(0, sem.available)   -- b holds it: nothing invented
    end)
  end)

  it("bpo-45997: FIFO order is kept across cancelled waiters, and a newcomer does not cut in", function()
    guard(function()
      local sem = corio.semaphore(0)
      local order = {}
      corio.scope(function(s)
        local ts = {}
        for i, name in ipairs({ "a", "b", "c", "d" }) do
          ts[i] = s:spawn(function()
            if pcall(sem.acquire, sem) then order[#order + 1] = name end
          end)
        end
        settle()
        ts[2]:cancel()
        ts[3]:cancel()
        sem:release()
        sem:release()
        s:spawn(function()   -- arrives after the releases
          sem:acquire(); order[#order + 1] = "e"
        end)
        settle()
        sem:release()
      end)
      assert.same({ "a", "d", "e" }, order)
      assert.equal(0, sem.available)
    end)
  end)

  it("a lock waiter cancelled before the release never becomes the owner", function()
    guard(function()
      local lock = corio.lock()
      local res = {}
      corio.scope(function(s)
        lock:acquire()
        local a = s:spawn(function() res.a = outcome(pcall(lock.acquire, lock)) end)
        settle()
        a:cancel()
        lock:release()
        assert.is_false(lock:locked())
      end)
      assert.equal("cancelled", res.a)
      -- a ended: had it owned the lock, the lock would now be broken
      assert.equal("ok", lock:with(function() return "ok" end))
    end)
  end)

  it("Event: a waiter cancelled in the step its event was set returns from wait, then sees the cancel", function()
    guard(function()
      local ev = corio.event()
      local log = {}
      corio.scope(function(s)
        local t = s:spawn(function()
          ev:wait()
          log[#log + 1] = "woken"
          log[#log + 1] = outcome(pcall(corio.yield))
        end)
        settle()
        ev:set()
        ev:clear()
        t:cancel()
      end)
      assert.same({ "woken", "cancelled" }, log)
    end)
  end)

  it("gh-112202 / bpo-31620: cancelled receivers leave no ghost behind for a notify or a value", function()
    guard(function()
      local ch = corio.channel()
      corio.scope(function(s)
        local ts = {}
        for i = 1, 200 do ts[i] = s:spawn(function() ch:recv() end) end
        settle()
        for i = 1, 200 do ts[i]:cancel() end
      end)
      -- nobody waits now: a rendezvous try_send must refuse, not hand the
      -- value to a cancelled receiver (the notify would be lost)
      assert.is_false(ch:try_send("notify"))
      -- a live receiver queued after cancelled ones gets the next value
      local got
      corio.scope(function(s)
        local dead = s:spawn(function() ch:recv() end)
        s:spawn(function() got = ch:recv() end)
        settle()
        dead:cancel()
        assert.is_true(ch:try_send("v"))
      end)
      assert.equal("v", got)
    end)
  end)

  it("Queue.put cancelled while the queue is full delivers nothing; the order stays", function()
    guard(function()
      local ch = corio.channel(1)
      ch:send(1)
      corio.scope(function(s)
        local a = s:spawn(function() ch:send("cancelled put") end)
        s:spawn(function() ch:send(2) end)
        settle()
        a:cancel()
        assert.equal(1, ch:recv())   -- frees the slot: b's value, not a's
      end)
      assert.same({ 2 }, helpers.drain(ch))
    end)
  end)

  it("python/asyncio#201, #343: a consumer whose recv keeps timing out loses no item and gets them in order", function()
    testing.autojump(function()
      local ch = corio.channel()
      local got, timeouts = {}, 0
      corio.scope(function(s)
        s:spawn(function()
          for i = 1, 60 do
            -- producer pauses of 0 to 0.5 s, some exactly on the
            -- consumer's 0.25 s deadlines
            corio.sleep((i % 3) * 0.25)
            ch:send(i)
          end
          ch:close()
        end)
        s:spawn(function()
          while true do
            local done, v, closed = corio.move_on_after(0.25, ch.recv, ch)
            if not done then
              timeouts = timeouts + 1
            elseif v == nil and closed == "closed" then
              break
            else
              got[#got + 1] = v
            end
          end
        end)
      end)
      assert.equal(60, #got)
      for i = 1, 60 do assert.equal(i, got[i]) end
      assert.is_true(timeouts > 0)
    end)
  end)

  it("bpo-23812 / gh-108042: with a full buffer, a cancelled sender neither delivers nor blocks the next sender", function()
    guard(function()
      local ch = corio.channel(1)
      ch:send(1)
      corio.scope(function(s)
        local a = s:spawn(function() ch:send("cancelled put") end)
        s:spawn(function() ch:send(2) end)
        s:spawn(function() ch:send(3) end)
        settle()
        a:cancel()
        assert.equal(1, ch:recv())   -- the freed slot goes to 2, not to a
        assert.equal(2, ch:recv())
      end)
      assert.same({ 3 }, helpers.drain(ch))
    end)
  end)

  it("asyncio's uncancellable fast paths: every primitive checks a cancelled scope on entry and takes nothing", function()
    local sem, lock, ev = corio.semaphore(1), corio.lock(), corio.event()
    local ch = corio.channel(2)
    ch:try_send("buffered")
    ev:set()
    local ended = corio.spawn(function() return 1 end)
    ended:join()
    for name, call in pairs({
      acquire = function() sem:acquire() end,
      with = function() sem:with(function() error("ran") end) end,
      lock = function() lock:acquire() end,
      wait = function() ev:wait() end,
      recv = function() ch:recv() end,
      send = function() ch:send("x") end,
      join = function() ended:join() end,
      sleep0 = function() corio.sleep(0) end,
    }) do
      local err = helpers.catch_cancelled(call)
      assert.is_true(corio.is_cancelled(err), name)
    end
    assert.equal(1, sem.available)
    assert.is_false(lock:locked())
    assert.same({ "buffered" }, helpers.drain(ch))
  end)

  it("a consumer whose recv always finds a value can still be cancelled, and does not starve the others", function()
    guard(function()
      local ch = corio.channel(math.huge)
      for i = 1, 1000 do ch:try_send(i) end
      local taken, other_ran = 0, false
      corio.scope(function(s)
        local consumer = s:spawn(function()
          while true do
            ch:recv()
            taken = taken + 1
            if taken == 1000 then ch:try_send(0) end  -- never runs dry
          end
        end)
        s:spawn(function()
          other_ran = true
          consumer:cancel()
        end)
      end)
      assert.is_true(other_ran)
      assert.is_true(taken < 1000)
      -- what it took is gone, the rest is still there
      assert.equal(1000 - taken, #helpers.drain(ch))
    end)
  end)

  it("asyncio's fast paths never yield (an acquire of a free lock starves the loop); corio's do, within a budget", function()
    guard(function()
      local sem, lock, ev = corio.semaphore(1), corio.lock(), corio.event()
      ev:set()
      local ch = corio.channel(math.huge)
      local ended = corio.spawn(function() end)
      ended:join()
      for name, step in pairs({
        sem = function() sem:acquire(); sem:release() end,
        sem_with = function() sem:with(function() end) end,
        lock = function() lock:acquire(); lock:release() end,
        lock_with = function() lock:with(function() end) end,
        event = function() ev:wait() end,
        channel = function() ch:send(1); ch:recv() end,
        join = function() ended:join() end,
      }) do
        local n, seen_at = 0, nil
        corio.scope(function(s)
          s:spawn(function() for i = 1, 20000 do n = i; step() end end)
          s:spawn(function() seen_at = n end)
        end)
        assert.is_true(seen_at ~= nil and seen_at < 1000, name .. ": other task ran at " .. tostring(seen_at))
      end
    end)
  end)

  it("a cancel that lands during a fast path's budget yield loses nothing the call took (rule 3)", function()
    for k = 1, 70 do
      local sem = corio.semaphore(1000)
      local ch = corio.channel(1000)
      for i = 1, 1000 do ch:try_send(i) end
      local out = corio.channel(1000)
      local held, got, sent = 0, 0, 0
      corio.scope(function(s)
        local a = s:spawn(function()
          for i = 1, 300 do
            if pcall(sem.acquire, sem) then held = held + 1 end
            if pcall(ch.recv, ch) then got = got + 1 end
            if pcall(out.send, out, i) then sent = sent + 1 end
          end
        end)
        s:spawn(function()
          for _ = 1, k do corio.yield() end
          a:cancel()
        end)
      end)
      assert.equal(1000 - held, sem.available, "k = " .. k)
      assert.equal(1000 - got, #helpers.drain(ch), "k = " .. k)
      assert.equal(sent, #helpers.drain(out), "k = " .. k)
    end
  end)

  it("asyncio.Lock stays held forever by a cancelled owner; corio breaks it, naming the owner (rule 8)", function()
    guard(function()
      local lock = corio.lock()
      local owner
      local waiter_err
      corio.scope(function(s)
        owner = s:spawn(function()
          lock:acquire()      -- no with(): the cancel ends it holding the lock
          corio.sleep(10)
        end)
        s:spawn(function()
          local ok, e = pcall(lock.acquire, lock)
          waiter_err = e
        end)
        settle()
        owner:cancel()
      end)
      assert.equal("broken", waiter_err.kind)
      assert.equal("broken", catch(lock.acquire, lock).kind)
      assert.matches(owner.name, waiter_err.message, 1, true)
    end)
  end)

  it("randomized: cancels and deadlines racing semaphore, lock and channel hand-offs keep every invariant", function()
    for _, seed in ipairs(helpers.stress_seeds({ 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233 })) do
      local rand = helpers.lcg(seed)
      local N = 3
      local sem, lock = corio.semaphore(N), corio.lock()
      local ch = corio.channel(rand(3) - 1)
      local held, inlock = 0, 0
      local sent, recvd = {}, {}
      testing.autojump(function()
        corio.scope(function(s)
          local tasks = {}
          for i = 1, 16 do
            local kind, d, mode = rand(4), rand(5) / 10, rand(3)
            local deadline, pause = rand(5) / 10, rand(3) / 10
            tasks[i] = s:spawn(function()
              local function op()
                if kind == 1 then
                  sem:with(function()
                    held = held + 1
                    assert(held <= N, "more permits out than the semaphore has")
                    local ok, e = pcall(corio.sleep, d)
                    held = held - 1
                    if not ok then error(e, 0) end
                  end)
                elseif kind == 2 then
                  lock:with(function()
                    inlock = inlock + 1
                    assert(inlock == 1, "two owners of the lock")
                    local ok, e = pcall(corio.sleep, d)
                    inlock = inlock - 1
                    if not ok then error(e, 0) end
                  end)
                elseif kind == 3 then
                  local v = seed * 100 + i
                  local ok, e = pcall(ch.send, ch, v)
                  if ok then sent[#sent + 1] = v
                  elseif not corio.is_error(e, "closed") then error(e, 0) end
                else
                  local v = ch:recv()
                  if v ~= nil then recvd[#recvd + 1] = v end
                end
              end
              if mode == 1 then corio.move_on_after(deadline, op)
              elseif mode == 2 then corio.sleep(pause); op()
              else op() end
            end)
          end
          for _ = 1, 6 do
            corio.sleep(rand(4) / 10)
            tasks[rand(#tasks)]:cancel()
          end
          corio.sleep(3)
          ch:close()
        end)
      end)
      local seen = {}
      for _, v in ipairs(recvd) do seen[v] = (seen[v] or 0) + 1 end
      for _, v in ipairs(helpers.drain(ch)) do seen[v] = (seen[v] or 0) + 1 end
      local nseen = 0
      for _, n in pairs(seen) do nseen = nseen + 1; assert.equal(1, n, "seed " .. seed) end
      -- every completed send's value arrived once, and nothing else did
      assert.equal(#sent, nseen, "seed " .. seed)
      for _, v in ipairs(sent) do assert.equal(1, seen[v], "seed " .. seed) end
      assert.equal(N, sem.available, "seed " .. seed)
      assert.is_false(lock:locked(), "seed " .. seed)
    end
  end)
end)

describe("asyncio bugs: TaskGroup / scope", function()
  it("a child error while the body waits at the scope's exit: the scope raises it, the rest are cancelled", function()
    testing.autojump(function()
      local other, body_defer = nil, false
      local err = catch(corio.scope, function(s)
        corio.defer(function() body_defer = true end)
        s:spawn(function() corio.sleep(1); error("child failed", 0) end)
        s:spawn(function() other = outcome(pcall(corio.sleep, 10)); corio.yield() end)
        return "body returned"
      end)
      assert.equal("error", err.kind)
      assert.equal("child failed", err.value)
      assert.equal(1, #err.errors)
      assert.equal("cancelled", other)
      assert.is_true(body_defer)
    end)
  end)

  it("a body error and a child error: the first raised, both listed, in order", function()
    testing.autojump(function()
      local err = catch(corio.scope, function(s)
        s:spawn(function()
          corio.defer(function()
            corio.shield(corio.sleep, 1)
            error("child cleanup failed", 0)
          end)
          corio.sleep(10)
        end)
        corio.sleep(0.5)
        error("body failed", 0)
      end)
      assert.equal("body failed", err.value)
      assert.equal(2, #err.errors)
      assert.equal("body failed", err.errors[1].value)
      assert.equal("child cleanup failed", err.errors[2].value)
    end)
  end)

  it("gh-116720: an inner scope's child error is not lost to an outer cancel, and the outer cancel is not lost", function()
    testing.autojump(function()
      local after_inner = false
      local outer_scope
      local err = catch(corio.scope, function(outer)
        outer_scope = outer
        corio.scope(function(inner)
          inner:spawn(function()
            corio.defer(function() error("inner child failed", 0) end)
            corio.sleep(10)
          end)
          corio.sleep(1)
          outer:cancel()          -- the child fails in its cleanup
          corio.sleep(1)
        end)
        after_inner = true
      end)
      -- a real error is never absorbed by a cancelled scope (rule 9)
      assert.equal("inner child failed", err.value)
      assert.is_false(after_inner)
      assert.is_true(outer_scope.cancelled)
    end)
  end)

  it("a task cancelled while its scope handles a child's error: the error is raised, and the cancel is not lost", function()
    -- asyncio: TaskGroup cancels its parent task for the child error and
    -- uncancels it at exit; an outside cancel in between had to be
    -- counted apart (gh-116720)
    testing.autojump(function()
      local log = {}
      local t = corio.spawn(function()
        local ok, e = pcall(corio.scope, function(s)
          s:spawn(function() corio.sleep(1); error("boom", 0) end)
          corio.defer(function() corio.shield(corio.sleep, 1) end)
          corio.sleep(10)
        end)
        log[#log + 1] = ok and "ok" or e.value
        log[#log + 1] = corio.now()
        corio.sleep(5)
        log[#log + 1] = "not reached"
      end)
      local t0 = corio.now()
      corio.sleep(1.5)
      t:cancel()                         -- while the body's cleanup runs
      assert.equal("cancelled", outcome(pcall(t.join, t)))
      assert.equal("boom", log[1])
      assert.near(2, log[2] - t0, 1e-6)
      assert.equal(2, #log)
      assert.near(2, corio.now() - t0, 1e-6)   -- the sleep(5) raised at once
    end)
  end)

  it("a body that swallows every Cancelled cannot hang the scope: the level-triggered cancel ends it", function()
    testing.autojump(function()
      local attempts = 0
      local t0 = corio.now()
      local err = catch(corio.scope, function(s)
        s:spawn(function() corio.sleep(1); error("boom", 0) end)
        for _ = 1, 5 do
          -- asyncio: a swallowed CancelledError leaves the task running
          -- (and waiting) until something cancels it again
          if not pcall(corio.sleep, 3600) then attempts = attempts + 1 end
        end
        return "body returned"
      end)
      assert.equal(5, attempts)
      assert.equal("boom", err.value)
      assert.near(1, corio.now() - t0, 1e-6)   -- no hour slept
    end)
  end)

  it("a child that swallows its Cancelled and returns ends 'done'; the scope still raises the sibling's error", function()
    testing.autojump(function()
      local swallower
      local t0 = corio.now()
      local err = catch(corio.scope, function(s)
        s:spawn(function() corio.sleep(1); error("boom", 0) end)
        swallower = s:spawn(function()
          pcall(corio.sleep, 3600)
          return "swallowed"
        end)
      end)
      assert.equal("boom", err.value)
      assert.equal(1, #err.errors)
      assert.equal("done", swallower:status())
      assert.equal("swallowed", swallower:join())
      assert.near(1, corio.now() - t0, 1e-6)
    end)
  end)

  it("TaskGroup.create_task after the group exited: spawn into a returned scope raises; into one whose body ended it is accepted", function()
    guard(function()
      local saved
      local late = false
      corio.scope(function(s)
        saved = s
        s:spawn(function()
          corio.yield()
          s:spawn(function() late = true end)   -- body has ended; scope still open
        end)
      end)
      assert.is_true(late)
      local ran = false
      local err = catch(saved.spawn, saved, function() ran = true end)
      assert.matches("spawn", tostring(err))
      corio.sleep(0)
      assert.is_false(ran)   -- the function is never started either
    end)
  end)

  it("a child spawned into an aborting scope still starts: its cleanup runs (asyncio never ran such coroutines)", function()
    guard(function()
      local log = {}
      corio.scope(function(s)
        s:cancel()
        s:spawn(function()
          corio.defer(function() log[#log + 1] = "cleanup" end)
          log[#log + 1] = "started"
          corio.yield()
          log[#log + 1] = "not reached"
        end)
      end)
      assert.same({ "started", "cleanup" }, log)
    end)
  end)

  it("randomized: nested scopes, deadlines, shields and cancels: every defer runs once, no task is left, no cancel leaks", function()
    for _, seed in ipairs(helpers.stress_seeds({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 })) do
      local rand = helpers.lcg(seed)
      local entered, deferred = 0, 0
      local scopes, tasks = {}, {}
      local function body(depth)
        entered = entered + 1
        corio.defer(function() deferred = deferred + 1 end)
        local k = rand(6)
        if depth > 3 or k == 1 then
          corio.sleep(rand(10) / 10)
        elseif k == 2 then
          corio.move_on_after(rand(10) / 10, body, depth + 1)
        elseif k == 3 then
          local ok, e = pcall(corio.timeout, rand(10) / 10, body, depth + 1)
          if not ok and not corio.is_error(e, "timeout") then error(e, 0) end
        elseif k == 4 then
          corio.shield(corio.move_on_after, rand(10) / 10, body, depth + 1)
        elseif k == 5 then
          corio.scope(function(s)
            scopes[#scopes + 1] = s
            for _ = 1, rand(3) do tasks[#tasks + 1] = s:spawn(body, depth + 1) end
            body(depth + 1)
          end)
        else
          local ok, e = pcall(corio.sleep, rand(10) / 10)
          if not ok then error(e, 0) end
          corio.yield()
        end
      end
      local before = #corio.tasks()
      testing.autojump(function()
        corio.scope(function(top)
          top:spawn(function()
            for _ = 1, 5 do
              corio.sleep(rand(10) / 10)
              local which = rand(3)
              if which == 1 and #scopes > 0 then scopes[rand(#scopes)]:cancel()
              elseif which == 2 and #tasks > 0 then tasks[rand(#tasks)]:cancel() end
            end
          end)
          corio.move_on_after(3, body, 0)
        end)
        -- nothing of the cancels and deadlines inside leaks out
        corio.sleep(0.1)
        corio.yield()
      end)
      assert.is_true(entered > 0, "seed " .. seed)
      assert.equal(entered, deferred, "seed " .. seed)
      assert.equal(before, #corio.tasks(), "seed " .. seed)
    end
  end)
end)

describe("asyncio bugs: task cancel", function()
  it("cancelling a task twice is one cancel: no count to undo, the joiner is not cancelled", function()
    guard(function()
      local t = corio.spawn(corio.sleep, 10)
      corio.yield()
      t:cancel()
      t:cancel()
      assert.equal("cancelled", outcome(pcall(t.join, t)))
      t:cancel()                        -- after it ended: a no-op
      assert.equal("cancelled", t:status())
      assert.is_true(pcall(corio.sleep, 0))   -- the caller is not cancelled
      assert.is_true(pcall(corio.yield))
    end)
  end)

  it("cancel of a finished task is a no-op: it keeps its results or its error", function()
    guard(function()
      local ok_t = corio.spawn(function() return 1, 2 end)
      ok_t:join()
      ok_t:cancel()
      assert.equal("done", ok_t:status())
      assert.same({ 1, 2 }, { ok_t:join() })
      local bad_t
      catch(corio.scope, function(s)
        bad_t = s:spawn(function() error("bad", 0) end)
      end)
      bad_t:cancel()
      assert.equal("failed", bad_t:status())
      assert.equal("bad", catch(bad_t.join, bad_t).value)
    end)
  end)

  it("a joiner cancelled while it waits in join does not cancel the task it joins (asyncio does)", function()
    testing.autojump(function()
      local worker = corio.spawn(function() corio.sleep(2); return "worker result" end)
      local joiner = corio.spawn(function() return worker:join() end)
      corio.sleep(1)
      joiner:cancel()
      assert.equal("cancelled", outcome(pcall(joiner.join, joiner)))
      assert.equal("running", worker:status())
      assert.equal("worker result", worker:join())
    end)
  end)

  it("a task cancelled before it started still starts and runs its cleanup (asyncio: never runs, no finally)", function()
    guard(function()
      local log = {}
      local t = corio.spawn(function()
        corio.defer(function() log[#log + 1] = "cleanup" end)
        log[#log + 1] = "started"
        corio.yield()
        log[#log + 1] = "not reached"
      end)
      assert.equal("pending", t:status())
      t:cancel()
      assert.equal("cancelled", outcome(pcall(t.join, t)))
      assert.same({ "started", "cleanup" }, log)
      assert.equal("cancelled", t:status())
    end)
  end)

  it("a cancel that arrives during a shielded cleanup lets it finish; the task then ends cancelled", function()
    testing.autojump(function()
      local log = {}
      local t = corio.spawn(function()
        corio.defer(function()
          corio.shield(function()
            corio.sleep(1)
            log[#log + 1] = "cleanup finished"
          end)
          corio.yield()   -- after the shield: the cancel is seen here
          log[#log + 1] = "not reached"
        end)
        -- ends normally at once: only the cleanup is left
      end)
      corio.sleep(0.5)
      assert.equal("running", t:status())
      t:cancel()
      assert.equal("cancelled", outcome(pcall(t.join, t)))
      assert.same({ "cleanup finished" }, log)
    end)
  end)

  it("a Cancelled raised in cleanup of a cancelled task is not reported as an error; a real one is", function()
    guard(function()
      local t = corio.spawn(function()
        corio.defer(function() corio.yield() end)   -- raises Cancelled
        corio.sleep(10)
      end)
      corio.yield()
      t:cancel()
      assert.equal("cancelled", outcome(pcall(t.join, t)))
      -- a real error in that cleanup is never silent: it fails the task
      -- and is an error of its scope
      local u
      local serr = catch(corio.scope, function(s)
        u = s:spawn(function()
          corio.defer(function() error("cleanup failed", 0) end)
          corio.sleep(10)
        end)
        corio.yield()
        u:cancel()
      end)
      assert.equal("cleanup failed", serr.value)
      assert.equal("failed", u:status())
      assert.equal("cleanup failed", catch(u.join, u).value)
    end)
  end)

  it("asyncio.shield loses the result on an outer cancel; corio.shield returns it, the cancel comes next", function()
    testing.autojump(function()
      local got, after
      local t = corio.spawn(function()
        got = corio.shield(function() corio.sleep(1); return 42 end)
        after = corio.now()
        corio.yield()
        error("not reached")
      end)
      corio.sleep(0.5)
      t:cancel()
      local t0 = corio.now()
      assert.equal("cancelled", outcome(pcall(t.join, t)))
      assert.equal(42, got)
      assert.near(0.5, corio.now() - t0, 1e-6)
      assert.is_not_nil(after)
    end)
  end)

  it("asyncio.shield's inner error after an outer cancel is 'never retrieved'; corio's fails the task with it", function()
    testing.autojump(function()
      local t
      local err = catch(corio.scope, function(s)
        t = s:spawn(function()
          corio.shield(function() corio.sleep(1); error("boom", 0) end)
        end)
        corio.sleep(0.5)
        t:cancel()
      end)
      assert.equal("boom", err.value)   -- an error of the scope (rule 9)
      assert.equal("failed", t:status())
      assert.equal("boom", catch(t.join, t).value)
    end)
  end)

  it("a shield entered in an already cancelled scope runs its checkpoints; its own deadline still applies", function()
    testing.autojump(function()
      local log = {}
      corio.scope(function(s)
        s:cancel()
        corio.shield(function()
          corio.sleep(1)
          log[#log + 1] = "slept"
          log[#log + 1] = tostring(corio.move_on_after(1, corio.sleep, 5))
        end)
        log[#log + 1] = outcome(pcall(corio.yield))
      end)
      assert.same({ "slept", "false", "cancelled" }, log)
    end)
  end)

  it("gh-102780: after a swallowed cancel, a timeout inside a shield still raises TimeoutError", function()
    testing.autojump(function()
      local inner
      local t = corio.spawn(function()
        pcall(corio.sleep, 10)            -- the task's cancel, caught
        -- cleanup with its own bound: its deadline is its own, so it is a
        -- timeout, whatever the task's cancel state
        inner = corio.shield(function()
          return outcome(pcall(corio.timeout, 1, corio.sleep, 10))
        end)
        corio.yield()
      end)
      corio.sleep(1)
      t:cancel()
      assert.equal("cancelled", outcome(pcall(t.join, t)))
      assert.equal("timeout", inner)
    end)
  end)
end)

describe("asyncio bugs: gather", function()
  it("a cancelled gather cancels its functions and returns only after their cleanup ran", function()
    testing.autojump(function()
      local cleaned = 0
      local t0 = corio.now()
      local r = corio.move_on_after(1, corio.gather, {
        function() corio.defer(function() corio.shield(corio.sleep, 2); cleaned = cleaned + 1 end); corio.sleep(10) end,
        function() corio.defer(function() cleaned = cleaned + 1 end); corio.sleep(10) end,
      })
      assert.is_false(r)
      assert.equal(2, cleaned)
      assert.near(3, corio.now() - t0, 1e-6)
    end)
  end)

  it("a cancelled gather whose functions swallow the cancel returns their results; the cancel is not lost", function()
    -- asyncio.gather's outcome then depends on its cancel bookkeeping; in
    -- corio the functions completed (rule 7), so gather returns what they
    -- returned, and the task's cancel, level-triggered, is raised by its
    -- next checkpoint
    for _, opts in ipairs({ {}, { return_errors = true } }) do
      testing.autojump(function()
        local r, errs, next_check
        local t = corio.spawn(function()
          r, errs = corio.gather({
            function() pcall(corio.sleep, 10); return "a" end,
            function() pcall(corio.sleep, 10); return "b" end,
          }, opts)
          next_check = outcome(pcall(corio.yield))
          corio.yield()
        end)
        corio.sleep(1)
        t:cancel()
        assert.equal("cancelled", outcome(pcall(t.join, t)))
        assert.same({ "a", "b" }, r)
        if opts.return_errors then assert.same({}, errs) end
        assert.equal("cancelled", next_check)
      end)
    end
  end)

  it("a Task given to gather that is cancelled is a failure: gather raises it, cancels the rest, the caller goes on", function()
    testing.autojump(function()
      local task = corio.spawn(corio.sleep, 10)
      local other_cleaned = false
      local err
      corio.spawn(function() corio.sleep(1); task:cancel() end)
      err = catch(corio.gather, {
        function() corio.defer(function() other_cleaned = true end); corio.sleep(10) end,
        task,
      })
      assert.is_true(corio.is_cancelled(err))
      assert.is_true(other_cleaned)
      assert.is_true(pcall(corio.sleep, 0))    -- the caller's scope is not cancelled
      -- with return_errors it goes to errors[i], the rest finish
      local task2 = corio.spawn(corio.sleep, 10)
      corio.spawn(function() corio.sleep(1); task2:cancel() end)
      local r, errs = corio.gather({ function() corio.sleep(2); return "ran" end, task2 },
        { return_errors = true })
      assert.equal("ran", r[1])
      assert.is_nil(errs[1])
      assert.is_true(corio.is_cancelled(errs[2]))
    end)
  end)

  it("first error wins; errors raised later while cancelled are listed after it; the Cancelleds are not", function()
    testing.autojump(function()
      local err = catch(corio.gather, {
        function() corio.sleep(1); error("first", 0) end,
        function()
          corio.defer(function() error("late cleanup", 0) end)
          corio.sleep(10)
        end,
        function() corio.sleep(10) end,      -- just cancelled
        function() corio.sleep(2); error("never", 0) end,
      })
      assert.equal("first", err.value)
      local values = {}
      for i, e in ipairs(err.errors) do values[i] = e.value end
      assert.same({ "first", "late cleanup" }, values)
    end)
  end)

  it("return_errors: a late error does not replace a result already produced", function()
    testing.autojump(function()
      local r, errs = corio.gather({
        function() corio.sleep(1); return "early" end,
        function() corio.sleep(2); error("late", 0) end,
      }, { return_errors = true })
      assert.equal("early", r[1])
      assert.is_nil(errs[1])
      assert.equal("late", errs[2].value)
    end)
  end)

  it("gather + Semaphore, cancelled from outside: no call starts after the cancel, every cleanup ran, the permits are back", function()
    testing.autojump(function()
      local started, cleaned, active, peak = 0, 0, 0, 0
      local items = {}
      for i = 1, 10 do items[i] = i end
      local r = corio.move_on_after(2.5, corio.map, items, function(i)
        started = started + 1
        active = active + 1
        if active > peak then peak = active end
        corio.defer(function() cleaned = cleaned + 1; active = active - 1 end)
        corio.sleep(1)
        return i
      end, { limit = 2 })
      assert.is_false(r)
      assert.equal(6, started)    -- 1-4 finished, 5 and 6 were cut at 2.5 s
      assert.equal(6, cleaned)
      assert.equal(2, peak)
      -- asyncio's way: every call waits on one semaphore
      local sem = corio.semaphore(2)
      started = 0
      r = corio.move_on_after(2.5, corio.map, items, function(i)
        return sem:with(function() started = started + 1; corio.sleep(1); return i end)
      end)
      assert.is_false(r)
      assert.equal(6, started)
      assert.equal(2, sem.available)
    end)
  end)
end)

describe("asyncio bugs: a request through a mock transport is a checkpoint too", function()
  -- httpx's MockTransport answers without awaiting anything, and so does
  -- a corio transport that returns at once: the request must still check
  -- the cancel on entry (rule 3) and count against the budget (rule 15),
  -- as it does over the network, or a program tested with a mock spins
  -- where it would be cancelled in production
  local http = require("corio.http")

  it("raises Cancelled on entry in a cancelled scope, naming the request, and does not call the transport", function()
    local called = 0
    local c = http.client{ transport = function(req)
      called = called + 1
      return { status = 200, body = "ok" }
    end }
    for name, call in pairs({
      get = function() return c:get("http://mock/a") end,
      post_body = function() return c:post("http://mock/a", { body = "x" }) end,
      post_iter = function()
        local sent = false
        return c:post("http://mock/a", { body = function()
          if sent then return nil end
          sent = true
          return "x"
        end })
      end,
      request = function() return c:request("DELETE", "http://mock/a") end,
      stream = function() return c:stream("GET", "http://mock/a") end,
    }) do
      local err = helpers.catch_cancelled(call)
      assert.is_true(corio.is_cancelled(err), name)
      assert.matches("http://mock/a", err.message, 1, true)
    end
    assert.equal(0, called)
    -- and corio.testing sees the checkpoint (trio's assert_checkpoints)
    testing.assert_checkpoints(function() return c:get("http://mock/a") end)
    local lines = c:stream("GET", "http://mock/a"):iter_lines()
    testing.assert_checkpoints(lines)
    c:close()
  end)

  it("a loop of requests answered at once lets the other tasks run, and a deadline cuts it", function()
    local c = http.client{ transport = function() return { status = 204 } end }
    local n, seen_at = 0, nil
    corio.scope(function(s)
      s:spawn(function() for i = 1, 20000 do n = i; c:get("http://mock/") end end)
      s:spawn(function() seen_at = n end)
    end)
    assert.is_true(seen_at ~= nil and seen_at < 1000, "other task ran at " .. tostring(seen_at))
    local count = 0
    local r = corio.move_on_after(0.05, function()
      while true do c:get("http://mock/"); count = count + 1 end
    end)
    assert.is_false(r)
    assert.is_true(count > 0)
    c:close()
  end)

  it("iter_lines: a chunk read while the scope was cancelled gives its first line; the next call raises", function()
    -- the body iterator finishes its read under a shield while a
    -- deadline passes: the read completed, so its first line comes back
    -- (rule 7), and the lines after it wait for a call outside the scope
    local c = http.client{ transport = function()
      local sent = false
      return { status = 200, body = function()
        if sent then return nil end
        sent = true
        corio.shield(corio.sleep, 0.05)
        return "a\nb\nc\n"
      end }
    end }
    local r = c:stream("GET", "http://mock/lines")
    local lines = r:iter_lines()
    local got = {}
    local ok = corio.move_on_after(0.01, function()
      for line in lines do got[#got + 1] = line end
    end)
    assert.is_false(ok)
    assert.same({ "a" }, got)
    -- iter_bytes takes over what the lines loop held, whole
    local rest = {}
    for chunk in r:iter_bytes() do rest[#rest + 1] = chunk end
    assert.equal("b\nc\n", table.concat(rest))
    r:close()
  end)

  it("a stream read from a transport's body iterator checks the cancel on entry and loses no chunk", function()
    local n = 0
    local c = http.client{ transport = function()
      return { status = 200, body = function()
        n = n + 1
        return "chunk" .. n      -- endless
      end }
    end }
    local r = c:stream("GET", "http://mock/endless")
    local it = r:iter_bytes()
    assert.equal("chunk1", it())
    for name, call in pairs({
      iter_bytes = function() return it() end,
      read = function() return r:read(3) end,
    }) do
      local err = helpers.catch_cancelled(call)
      assert.is_true(corio.is_cancelled(err), name)
      assert.matches("http://mock/endless", err.message, 1, true)
    end
    assert.equal("chunk2", it())   -- nothing was taken by the cancelled reads
    -- a loop over an endless body: a deadline cuts it, the others run
    local seen_at, count = nil, 0
    local done
    corio.scope(function(s)
      s:spawn(function()
        done = corio.move_on_after(0.05, function()
          while true do it(); count = count + 1 end
        end)
      end)
      s:spawn(function() seen_at = count end)
    end)
    assert.is_false(done)
    assert.is_true(seen_at ~= nil and seen_at < 1000, "other task ran at " .. tostring(seen_at))
    r:close()
    c:close()
  end)
end)

describe("asyncio bugs: a stream read that needs no wait still checks the cancel (rule 3)", function()
  -- a network read can hand over several chunks at once, and iter_lines
  -- splits a chunk into many lines: the steps that take those without a
  -- read of their own are fast paths of a blocking call, and check the
  -- cancel on entry as fs's buffered reads do; nothing is taken or lost
  local http = require("corio.http")
  local base, stop, client
  setup(function()
    base, stop = helpers.http_server()
    client = http.client{}
  end)
  teardown(function()
    client:close()
    stop()
  end)

  local function expect_cancelled(call, what)
    local err = helpers.catch_cancelled(call)
    assert.is_true(corio.is_cancelled(err), what)
    return err
  end

  it("iter_bytes and read: chunks a read already got are not handed out in a cancelled scope", function()
    -- ~290 kB: curl hands the stream many chunks per read
    local whole = client:get(base .. "/numbers?n=50000"):text()
    local r = client:stream("GET", base .. "/numbers?n=50000")
    corio.sleep(0.2)                 -- the whole body has come
    local it = r:iter_bytes()
    local got = { it() }
    for _ = 1, 3 do expect_cancelled(it, "iter_bytes") end
    expect_cancelled(function() return r:read() end, "read")
    for chunk in it do got[#got + 1] = chunk end
    assert.equal(whole, table.concat(got))
    r:close()
  end)

  it("iter_lines: lines split from a chunk already read are not handed out in a cancelled scope", function()
    local r = client:stream("GET", base .. "/numbers?n=500")
    corio.sleep(0.2)
    local lines = r:iter_lines()
    assert.equal("0", lines())
    for _ = 1, 3 do expect_cancelled(lines, "iter_lines") end
    local n = 1
    for line in lines do
      assert.equal(tostring(n), line)
      n = n + 1
    end
    assert.equal(500, n)
    r:close()
  end)

  it("iter_bytes after a left iter_lines loop: the bytes it held are not handed out in a cancelled scope", function()
    local r = client:stream("GET", base .. "/numbers?n=500")
    corio.sleep(0.2)
    local lines = r:iter_lines()
    assert.equal("0", lines())
    local it = r:iter_bytes()      -- starts with what the lines loop held
    expect_cancelled(it, "iter_bytes")
    local rest = {}
    for chunk in it do rest[#rest + 1] = chunk end
    local want = {}
    for i = 1, 499 do want[i] = i .. "\n" end
    assert.equal(table.concat(want), table.concat(rest))
    r:close()
  end)

  it("iter_lines under a deadline that passed while the loop body computed: the next line raises", function()
    -- the lines come without a read of their own, and no timer fired
    -- (nothing yielded): the entry check catches the deadline up, as
    -- corio.yield does (trio_parity_spec)
    local r = client:stream("GET", base .. "/numbers?n=500")
    corio.sleep(0.2)
    local lines = r:iter_lines()
    local got = {}
    local ok = corio.move_on_after(0.05, function()
      for line in lines do
        got[#got + 1] = line
        if #got == 3 then
          local t0 = os.clock()
          while os.clock() - t0 < 0.1 do end   -- past the deadline, no checkpoint
        end
      end
    end)
    assert.is_false(ok)
    assert.same({ "0", "1", "2" }, got)
    -- nothing was lost: the loop goes on outside the scope
    local n = 3
    for line in lines do
      assert.equal(tostring(n), line)
      n = n + 1
    end
    assert.equal(500, n)
    r:close()
  end)
end)
