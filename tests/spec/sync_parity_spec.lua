-- sync_parity_spec.lua: corio's channels, semaphores, locks and events
-- against the designs they follow: trio's memory channels and
-- Lock/Semaphore/Event (the cases trio's test_channel.py and test_sync.py
-- pin down), asyncio's Queue/Semaphore/Event/Lock, and Go channel
-- semantics where SPEC says so (capacity 0 is a rendezvous). Where corio
-- differs on purpose, docs/api.md ("Differences from trio, asyncio and
-- Go") says so and the case here checks what corio does instead.

local corio = require("corio")
local testing = require("corio.testing")
local cb = require("corio.busted")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch

cb.timeout(60)

-- A generous watchdog around anything that could hang on a broken runtime.
local function guard(fn, ...)
  return corio.timeout(30, fn, ...)
end

-- Let every spawned task run until it blocks.
local function settle()
  testing.wait_all_tasks_blocked()
end

local drain = helpers.drain

-- ---------------------------------------------------------------------
describe("sync parity: channel close", function()
  it("blocked receivers get nil, 'closed'; later receivers too (trio EndOfChannel)", function()
    guard(function()
      local ch = corio.channel(2)
      local got = {}
      corio.scope(function(s)
        for i = 1, 3 do
          s:spawn(function() got[i] = { ch:recv() } end)
        end
        settle()
        ch:close()
      end)
      for i = 1, 3 do assert.same({ nil, "closed" }, got[i]) end
      assert.same({ nil, "closed" }, { ch:recv() })
      assert.same({ nil, "closed" }, { ch:recv() })
      assert.same({ false, "closed" }, { ch:try_recv() })
    end)
  end)

  it("blocked senders raise kind 'closed'; receivers drain the buffer, then see the end", function()
    guard(function()
      local ch = corio.channel(1)
      ch:send("buffered")
      local errs = {}
      corio.scope(function(s)
        for i = 1, 2 do
          s:spawn(function()
            local ok, e = pcall(ch.send, ch, "blocked" .. i)
            errs[i] = ok and "delivered" or e
          end)
        end
        settle()
        assert.equal(1, #ch)
        ch:close()
      end)
      for i = 1, 2 do
        assert.is_table(errs[i])
        assert.equal("closed", errs[i].kind)
        assert.matches("channel:send%(%)", errs[i].message)
        assert.matches("closed while the send waited", errs[i].message)
      end
      -- the blocked senders' values were dropped; the buffered one stays
      assert.equal("buffered", ch:recv())
      assert.same({ nil, "closed" }, { ch:recv() })
    end)
  end)

  it("a rendezvous closed with senders blocked delivers none of their values", function()
    guard(function()
      local ch = corio.channel(0)
      local outcome = {}
      corio.scope(function(s)
        for i = 1, 3 do
          s:spawn(function()
            local ok, e = pcall(ch.send, ch, i)
            outcome[i] = ok and "delivered" or e.kind
          end)
        end
        settle()
        ch:close()
      end)
      assert.same({ "closed", "closed", "closed" }, outcome)
      assert.same({ false, "closed" }, { ch:try_recv() })
    end)
  end)

  it("closing twice is harmless (Go panics; trio's aclose is idempotent)", function()
    local ch = corio.channel(3)
    ch:send(1)
    ch:close()
    ch:close()
    assert.is_true(ch.closed)
    assert.equal("corio.Channel(1/3, closed)", tostring(ch))
    assert.equal(1, ch:recv())
    ch:close()
    assert.same({ nil, "closed" }, { ch:recv() })
  end)

  it("send and try_send on a closed channel raise kind 'closed' naming the function", function()
    local ch = corio.channel(5)
    ch:close()
    local e1 = catch(ch.send, ch, 1)
    assert.equal("closed", e1.kind)
    assert.matches("channel:send%(%): the channel is closed", e1.message)
    local e2 = catch(ch.try_send, ch, 1)
    assert.equal("closed", e2.kind)
    assert.matches("channel:try_send%(%): the channel is closed", e2.message)
    assert.equal(0, #ch)
  end)

  it("recv after close returns the buffered values first, in order", function()
    local ch = corio.channel(math.huge)
    for i = 1, 5 do ch:send(i) end
    ch:close()
    local got = {}
    for _ = 1, 5 do got[#got + 1] = ch:recv() end
    assert.same({ 1, 2, 3, 4, 5 }, got)
    assert.same({ nil, "closed" }, { ch:recv() })
  end)

  it("try_recv after close returns the buffered values, then false, 'closed'", function()
    local ch = corio.channel(2)
    ch:send("a"); ch:send("b")
    ch:close()
    assert.same({ true, "a" }, { ch:try_recv() })
    assert.same({ true, "b" }, { ch:try_recv() })
    assert.same({ false, "closed" }, { ch:try_recv() })
  end)

  it("iter() yields every value and ends at close (async for over trio's receive channel)", function()
    guard(function()
      local ch = corio.channel(0)
      local got = {}
      corio.scope(function(s)
        s:spawn(function()
          for i = 1, 10 do ch:send(i) end
          ch:close()
        end)
        for v in ch:iter() do got[#got + 1] = v end
      end)
      assert.equal(10, #got)
      for i = 1, 10 do assert.equal(i, got[i]) end
      -- an iterator over a closed, drained channel ends at once
      local n = 0
      for _ in ch:iter() do n = n + 1 end
      assert.equal(0, n)
    end)
  end)

  it("an iter() blocked at close ends the loop", function()
    guard(function()
      local ch = corio.channel(1)
      local n, ended = 0, false
      corio.scope(function(s)
        s:spawn(function()
          for _ in ch:iter() do n = n + 1 end
          ended = true
        end)
        ch:send("x")
        settle()
        ch:close()
      end)
      assert.equal(1, n)
      assert.is_true(ended)
    end)
  end)
end)

-- ---------------------------------------------------------------------
describe("sync parity: rendezvous (capacity 0)", function()
  it("try_send and try_recv fail when the other side is absent (trio test_unbuffered)", function()
    local ch = corio.channel()
    assert.equal(0, ch.capacity)
    assert.same({ false }, { ch:try_recv() })
    assert.is_false(ch:try_send(1))
    assert.equal(0, #ch)
  end)

  it("send returns only after a receiver took the value (Go's unbuffered hand-off)", function()
    guard(function()
      local ch = corio.channel(0)
      local log = {}
      corio.scope(function(s)
        s:spawn(function()
          ch:send("v")
          log[#log + 1] = "sent"
        end)
        settle()
        log[#log + 1] = "receiving"
        log[#log + 1] = ch:recv()
      end)
      assert.same({ "receiving", "v", "sent" }, log)
    end)
  end)

  it("try_send succeeds with a receiver waiting, and that receiver gets the value", function()
    guard(function()
      local ch = corio.channel(0)
      local got
      corio.scope(function(s)
        s:spawn(function() got = ch:recv() end)
        settle()
        assert.is_true(ch:try_send("x"))
        -- the value is the receiver's: nobody else can take it
        assert.same({ false }, { ch:try_recv() })
      end)
      assert.equal("x", got)
    end)
  end)

  it("try_recv succeeds with a sender waiting, and that sender's send returns", function()
    guard(function()
      local ch = corio.channel(0)
      local sent = false
      corio.scope(function(s)
        s:spawn(function() ch:send("y"); sent = true end)
        settle()
        assert.same({ true, "y" }, { ch:try_recv() })
        assert.same({ false }, { ch:try_recv() })
      end)
      assert.is_true(sent)
    end)
  end)
end)

-- ---------------------------------------------------------------------
describe("sync parity: channel FIFO and fairness", function()
  it("many blocked senders deliver in arrival order, after the buffer", function()
    guard(function()
      local ch = corio.channel(2)
      ch:send("b1"); ch:send("b2")
      local got = {}
      corio.scope(function(s)
        for i = 1, 20 do
          s:spawn(function() ch:send(i) end)
        end
        settle()
        for _ = 1, 22 do got[#got + 1] = ch:recv() end
      end)
      assert.equal("b1", got[1]); assert.equal("b2", got[2])
      for i = 1, 20 do assert.equal(i, got[i + 2]) end
    end)
  end)

  it("many blocked receivers get values in arrival order", function()
    guard(function()
      local ch = corio.channel(0)
      local got, order = {}, {}
      corio.scope(function(s)
        for i = 1, 20 do
          s:spawn(function()
            got[i] = ch:recv()
            order[#order + 1] = i
          end)
        end
        settle()
        for v = 1, 20 do ch:send(v * 10) end
      end)
      for i = 1, 20 do assert.equal(i * 10, got[i]) end
    end)
  end)

  it("a value sent while a receiver waits is that receiver's (trio test_channel_fairness)", function()
    guard(function()
      local ch = corio.channel(1)
      -- nobody waiting: take back what we just sent
      assert.is_true(ch:try_send(1))
      assert.same({ true, 1 }, { ch:try_recv() })
      local got
      corio.scope(function(s)
        s:spawn(function() got = ch:recv() end)
        settle()
        assert.is_true(ch:try_send(2))
        assert.same({ false }, { ch:try_recv() })
      end)
      assert.equal(2, got)
    end)
  end)

  it("a slot freed while a sender waits is that sender's", function()
    guard(function()
      local ch = corio.channel(1)
      ch:send(1)
      assert.is_false(ch:try_send("no room"))
      corio.scope(function(s)
        s:spawn(function() ch:send(2) end)
        settle()
        assert.same({ true, 1 }, { ch:try_recv() })
        -- the waiting sender filled the slot at once
        assert.equal(1, #ch)
        assert.is_false(ch:try_send(3))
        assert.equal(2, ch:recv())
      end)
      assert.equal(0, #ch)
    end)
  end)
end)

-- ---------------------------------------------------------------------
describe("sync parity: channel cancellation (rule 7)", function()
  it("a cancelled blocked sender delivers nothing", function()
    guard(function()
      local ch = corio.channel(0)
      corio.scope(function(s)
        local t = s:spawn(function() ch:send("lost") end)
        settle()
        t:cancel()
      end)
      assert.same({ false }, { ch:try_recv() })
      local buf = corio.channel(1)
      buf:send("first")
      corio.scope(function(s)
        local t = s:spawn(function() buf:send("lost") end)
        settle()
        t:cancel()
      end)
      assert.same({ "first" }, drain(buf))
    end)
  end)

  it("a cancelled blocked receiver loses nothing", function()
    guard(function()
      local ch = corio.channel(1)
      corio.scope(function(s)
        local t = s:spawn(function() ch:recv() end)
        settle()
        t:cancel()
      end)
      assert.is_true(ch:try_send("kept"))
      assert.same({ "kept" }, drain(ch))
    end)
  end)

  it("recv in a cancelled scope raises Cancelled and leaves the buffered value", function()
    guard(function()
      local ch = corio.channel(1)
      ch:send("kept")
      corio.scope(function(s)
        s:cancel()
        local e = catch(ch.recv, ch)
        assert.is_true(corio.is_cancelled(e))
      end)
      assert.same({ "kept" }, drain(ch))
    end)
  end)

  it("send in a cancelled scope raises Cancelled and gives a waiting receiver nothing", function()
    guard(function()
      local ch = corio.channel(0)
      local got = "nothing"
      corio.scope(function(outer)
        outer:spawn(function()
          local ok, v = corio.move_on_after(0.05, ch.recv, ch)
          got = ok and v or "timed out"
        end)
        settle()
        corio.scope(function(s)
          s:cancel()
          local e = catch(ch.send, ch, "lost")
          assert.is_true(corio.is_cancelled(e))
        end)
      end)
      assert.equal("timed out", got)
    end)
  end)

  it("try_send and try_recv are not checkpoints: they work in a cancelled scope", function()
    local ch = corio.channel(1)
    corio.scope(function(s)
      s:cancel()
      assert.is_true(ch:try_send("a"))
      assert.same({ true, "a" }, { ch:try_recv() })
      ch:close()
    end)
    assert.is_true(ch.closed)
  end)

  it("a value handed to a waiting receiver that is cancelled before it runs is returned, not lost", function()
    guard(function()
      local ch = corio.channel(0)
      local got, after
      corio.scope(function(s)
        local t = s:spawn(function()
          got = ch:recv()
          local ok, e = pcall(corio.yield)
          after = ok and "no cancel" or (corio.is_cancelled(e) and "cancelled" or tostring(e))
        end)
        settle()
        assert.is_true(ch:try_send("handed"))   -- hand-off: t is woken with it
        t:cancel()                               -- before t ran
      end)
      assert.equal("handed", got)
      assert.equal("cancelled", after)   -- the cancel surfaces at the next checkpoint
    end)
  end)

  it("a sender whose value was taken before its cancel ran reports the send as done", function()
    guard(function()
      local ch = corio.channel(0)
      local log = {}
      corio.scope(function(s)
        local t = s:spawn(function()
          local ok, e = pcall(ch.send, ch, "taken")
          log[#log + 1] = ok and "sent" or (corio.is_cancelled(e) and "cancelled" or tostring(e))
        end)
        settle()
        assert.same({ true, "taken" }, { ch:try_recv() })
        t:cancel()
      end)
      -- the value was delivered, so the send succeeded: reporting it
      -- cancelled would make the caller send it again (a duplicate)
      assert.same({ "sent" }, log)
    end)
  end)

  it("a deadline that fires as a sender's value moves into the buffer loses and duplicates nothing", function()
    guard(function()
      -- many rounds of a sender racing a short deadline against a reader:
      -- every value is either delivered exactly once (send returned) or
      -- not at all (send raised), never both or neither
      local ch = corio.channel(1)
      local sent, got = {}, {}
      corio.scope(function(s)
        s:spawn(function()
          for i = 1, 200 do
            if corio.move_on_after(0.0005, ch.send, ch, i) then sent[#sent + 1] = i end
          end
          ch:close()
        end)
        s:spawn(function()
          local i = 0
          for v in ch:iter() do
            got[#got + 1] = v
            i = i + 1
            if i % 3 == 0 then corio.sleep(0.001) end
          end
        end)
      end)
      assert.same(sent, got)
    end)
  end)

  it("a deadline that fires as a value reaches a waiting receiver loses and duplicates nothing", function()
    guard(function()
      -- the receiver waits with a short deadline, the sender keeps
      -- sending: every value sent is received exactly once, in order
      local ch = corio.channel(0)
      local sent, got = 0, {}
      corio.scope(function(s)
        s:spawn(function()
          for i = 1, 200 do
            ch:send(i)
            sent = sent + 1
            if i % 4 == 0 then corio.sleep(0.001) end
          end
          ch:close()
        end)
        s:spawn(function()
          while true do
            local ok, v, closed = corio.move_on_after(0.0003, ch.recv, ch)
            if ok then
              if closed then break end
              got[#got + 1] = v
            end
          end
        end)
      end)
      assert.equal(200, sent)
      assert.equal(200, #got)
      for i = 1, 200 do assert.equal(i, got[i]) end
    end)
  end)

  it("a deadline racing semaphore hand-offs loses and invents no permit", function()
    guard(function()
      local sem = corio.semaphore(2)
      local held, peak = 0, 0
      corio.scope(function(s)
        for _ = 1, 30 do
          s:spawn(function()
            for _ = 1, 10 do
              corio.move_on_after(0.0005, sem.with, sem, function()
                held = held + 1
                if held > peak then peak = held end
                corio.defer(function() held = held - 1 end)
                corio.sleep(0.0003)
              end)
            end
          end)
        end
      end)
      assert.equal(0, held)
      assert.is_true(peak <= 2)
      assert.equal(2, sem.available)
    end)
  end)
end)

-- ---------------------------------------------------------------------
describe("sync parity: channel against a model queue", function()
  it("random try_send/try_recv/send/recv keep FIFO order and counts, across buffer wrap-around", function()
    guard(function()
      local seed = 12345
      local function rand(n)   -- a small LCG: the same sequence every run
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n + 1
      end
      for _, cap in ipairs { 1, 2, 3, 5, 8, math.huge } do
        local ch, model, next_v = corio.channel(cap), {}, 1
        for _ = 1, 2000 do
          local op = rand(4)
          if op <= 2 then
            local room = #model < cap
            local ok = ch:try_send(next_v)
            assert.equal(room, ok)
            if ok then model[#model + 1] = next_v; next_v = next_v + 1 end
          elseif op == 3 then
            local ok, v = ch:try_recv()
            assert.equal(#model > 0, ok)
            if ok then assert.equal(table.remove(model, 1), v) end
          elseif #model > 0 then
            assert.equal(table.remove(model, 1), ch:recv())
          end
          assert.equal(#model, #ch)
        end
        ch:close()
        assert.same(model, drain(ch))
      end
    end)
  end)
end)

-- ---------------------------------------------------------------------
describe("sync parity: channel capacity and values", function()
  it("rejects a negative, fractional, NaN or too large capacity, naming 'channel'", function()
    for _, bad in ipairs { -1, 1.5, 0 / 0, -math.huge, 2 ^ 32 - 1, 2 ^ 53 } do
      local e = catch(corio.channel, bad)
      assert.matches("bad argument #1 to 'channel' %(capacity must be", e)
    end
    assert.matches("bad argument #1 to 'channel' %(number expected, got string%)",
      catch(corio.channel, "3"))
  end)

  it("math.huge is unbounded (trio's math.inf); nil or no argument is a rendezvous", function()
    local ch = corio.channel(math.huge)
    assert.equal(math.huge, ch.capacity)
    for i = 1, 10000 do assert.is_true(ch:try_send(i)) end
    assert.equal(10000, #ch)
    assert.equal("corio.Channel(10000/inf)", tostring(ch))
    assert.same({ true, 1 }, { ch:try_recv() })
    assert.equal(0, corio.channel(nil).capacity)
    assert.equal(0, corio.channel().capacity)
    assert.equal(2 ^ 32 - 2, corio.channel(2 ^ 32 - 2).capacity)
  end)

  it("nil cannot be sent (intended difference: trio carries None), false can", function()
    guard(function()
      local ch = corio.channel(1)
      assert.matches("bad argument #1 to 'send' %(nil cannot be sent", catch(ch.send, ch, nil))
      assert.matches("bad argument #1 to 'try_send' %(nil cannot be sent", catch(ch.try_send, ch, nil))
      assert.equal(0, #ch)
      ch:send(false)
      assert.same({ true, false }, { ch:try_recv() })
      -- a receiver blocked while someone tries to send nil keeps waiting
      local got = "none"
      corio.scope(function(s)
        s:spawn(function() got = ch:recv() end)
        settle()
        catch(ch.send, ch, nil)
        settle()
        assert.equal("none", got)
        ch:send("real")
      end)
      assert.equal("real", got)
    end)
  end)

  it("fields are read-only and report the state", function()
    local ch = corio.channel(2)
    assert.is_false(ch.closed)
    ch:send(1)
    assert.equal(1, #ch)
    assert.equal("corio.Channel(1/2)", tostring(ch))
    assert.matches("field 'capacity' cannot be set", catch(function() ch.capacity = 5 end))
  end)
end)

-- ---------------------------------------------------------------------
describe("sync parity: semaphore", function()
  it("rejects a negative, fractional, NaN, infinite or non-number count, naming 'semaphore'", function()
    for _, bad in ipairs { -1, 1.5, 0 / 0, math.huge } do
      assert.matches("bad argument #1 to 'semaphore' %(non%-negative integer expected",
        catch(corio.semaphore, bad))
    end
    assert.matches("bad argument #1 to 'semaphore' %(number expected, got string%)",
      catch(corio.semaphore, "2"))
    assert.equal(1, corio.semaphore().available)
  end)

  it("semaphore(nil) is semaphore() (an optional argument, as corio.channel(nil))", function()
    assert.equal(1, corio.semaphore(nil).available)
  end)

  it("a count that a double cannot hold exactly is rejected", function()
    -- above 2^53 release and acquire would lose or invent permits
    assert.matches("bad argument #1 to 'semaphore'", catch(corio.semaphore, 2 ^ 53 + 2))
    assert.equal(2 ^ 53, corio.semaphore(2 ^ 53).available)
  end)

  it("a release past 2^53 permits raises instead of losing the permit", function()
    local sem = corio.semaphore(2 ^ 53 - 1)
    sem:release()
    assert.equal(2 ^ 53, sem.available)
    -- a release past 2^53 would be lost (2^53 + 1 is 2^53 as a double):
    -- it raises, naming the call, and the count stays exact
    assert.matches("semaphore:release%(%): the count cannot exceed 2%^53", catch(sem.release, sem))
    assert.equal(2 ^ 53, sem.available)
    sem:acquire()
    assert.equal(2 ^ 53 - 1, sem.available)
    sem:release()
    assert.equal(2 ^ 53, sem.available)
  end)

  it("semaphore(0): acquire waits for a release; the permit goes to the waiter, not the count", function()
    guard(function()
      local sem = corio.semaphore(0)
      assert.equal(0, sem.available)
      local got = false
      corio.scope(function(s)
        s:spawn(function() sem:acquire(); got = true end)
        settle()
        assert.is_false(got)
        sem:release()
        assert.equal(0, sem.available)   -- handed over, not counted
      end)
      assert.is_true(got)
      assert.equal(0, sem.available)
    end)
  end)

  it("release above the initial value raises the count (intended: asyncio's BoundedSemaphore raises)", function()
    local sem = corio.semaphore(1)
    sem:release()
    sem:release()
    assert.equal(3, sem.available)
    assert.equal("corio.Semaphore(available=3)", tostring(sem))
  end)

  it("with() holds one permit around fn and gives it back however fn ends", function()
    guard(function()
      local sem = corio.semaphore(2)
      local inside = {}
      sem:with(function()
        inside[#inside + 1] = sem.available
        sem:with(function() inside[#inside + 1] = sem.available end)
      end)
      assert.same({ 1, 0 }, inside)
      assert.equal(2, sem.available)
      assert.equal("boom", catch(sem.with, sem, function() error("boom", 0) end))
      assert.equal(2, sem.available)
      assert.is_false(corio.move_on_after(0.01, sem.with, sem, corio.sleep, 10))
      assert.equal(2, sem.available)
      assert.same({ 1, 2 }, { sem:with(function(a, b) return a, b end, 1, 2) })
    end)
  end)

  it("a releaser that acquires again at once queues behind the waiter (trio fairness)", function()
    guard(function()
      local sem = corio.semaphore(1)
      local log = {}
      sem:acquire()
      corio.scope(function(s)
        s:spawn(function()
          sem:acquire(); log[#log + 1] = "waiter"; sem:release()
        end)
        settle()
        sem:release()
        sem:acquire(); log[#log + 1] = "releaser"; sem:release()
      end)
      assert.same({ "waiter", "releaser" }, log)
      assert.equal(1, sem.available)
    end)
  end)

  it("waiters get permits in FIFO order; permits are conserved under many tasks", function()
    guard(function()
      local sem = corio.semaphore(3)
      local active, peak, order = 0, 0, {}
      corio.scope(function(s)
        for i = 1, 40 do
          s:spawn(function()
            sem:with(function()
              order[#order + 1] = i
              active = active + 1
              if active > peak then peak = active end
              corio.sleep(0.001)
              active = active - 1
            end)
          end)
        end
      end)
      assert.equal(3, peak)
      assert.equal(3, sem.available)
      for i = 1, 40 do assert.equal(i, order[i]) end
    end)
  end)

  it("a permit handed to a waiter cancelled before it runs is kept by it, not lost", function()
    guard(function()
      local sem = corio.semaphore(0)
      local acquired, after
      corio.scope(function(s)
        local t = s:spawn(function()
          sem:acquire()
          acquired = true
          local ok = pcall(corio.yield)
          after = ok and "no cancel" or "cancelled"
          sem:release()
        end)
        settle()
        sem:release()      -- handed to t
        t:cancel()         -- before t ran
      end)
      assert.is_true(acquired)
      assert.equal("cancelled", after)
      assert.equal(1, sem.available)
      -- through with(): the permit comes back too
      corio.scope(function(s)
        sem:acquire()
        local t = s:spawn(function() sem:with(corio.yield) end)
        settle()
        sem:release()
        t:cancel()
      end)
      assert.equal(1, sem.available)
    end)
  end)

  it("a cancelled waiter takes no permit and the next waiter gets it", function()
    guard(function()
      local sem = corio.semaphore(0)
      local got = {}
      corio.scope(function(s)
        local ts = {}
        for i = 1, 3 do ts[i] = s:spawn(function() sem:acquire(); got[#got + 1] = i end) end
        settle()
        ts[1]:cancel()
        sem:release()
        sem:release()
      end)
      assert.same({ 2, 3 }, got)
      assert.equal(0, sem.available)
    end)
  end)
end)

-- ---------------------------------------------------------------------
describe("sync parity: lock", function()
  it("re-acquire by the owner raises naming lock:acquire(); the lock stays held", function()
    guard(function()
      local lock = corio.lock()
      lock:acquire()
      local e = catch(lock.acquire, lock)
      assert.matches("lock:acquire%(%): the lock is already held by this task", tostring(e))
      assert.is_true(lock:locked())
      lock:release()
      assert.is_false(lock:locked())
    end)
  end)

  it("release by a non-owner raises naming the owner; release of a free lock raises", function()
    guard(function()
      local lock = corio.lock()
      assert.matches("lock:release%(%): the lock is not held", catch(lock.release, lock))
      local e
      corio.scope(function(s)
        local owner = s:spawn(function() lock:with(corio.sleep, 0.05) end)
        settle()
        e = catch(lock.release, lock)
        assert.matches("lock:release%(%): the lock is held by " .. owner.name:gsub("%p", "%%%0")
          .. ", not by the calling task", e)
        assert.is_true(lock:locked())
      end)
      assert.is_false(lock:locked())
    end)
  end)

  it("an owner that ends holding it breaks the lock: waiters and later acquires get kind 'broken' (rule 8)", function()
    guard(function()
      local lock = corio.lock()
      local errs = {}
      corio.scope(function(s)
        s:spawn(function() lock:acquire(); corio.sleep(0.01) end, nil)
        settle()
        for i = 1, 2 do
          s:spawn(function()
            local ok, e = pcall(lock.acquire, lock)
            errs[i] = ok and "acquired" or e
          end)
        end
      end)
      for i = 1, 2 do
        assert.equal("broken", errs[i].kind)
        assert.matches("lock broken: its owner %(.+%) ended while holding it", errs[i].message)
      end
      local e = catch(lock.acquire, lock)
      assert.equal("broken", e.kind)
      assert.equal("corio.Lock(broken)", tostring(lock))
    end)
  end)

  it("a lock handed to a waiter that then ends holding it is broken naming that waiter (trio test_lock_handover)", function()
    guard(function()
      local lock = corio.lock()
      local second
      corio.scope(function(s)
        s:spawn(function() lock:acquire(); corio.sleep(0.01); lock:release() end)
        settle()
        second = s:spawn(function() lock:acquire() end)   -- ends holding it
      end)
      local e = catch(lock.acquire, lock)
      assert.equal("broken", e.kind)
      assert.matches(second.name:gsub("%p", "%%%0"), e.message)
    end)
  end)

  it("an owner that fails inside with() releases it: the lock is not broken", function()
    guard(function()
      local lock = corio.lock()
      local ok = pcall(corio.scope, function(s)
        s:spawn(function() lock:with(function() error("inside", 0) end) end)
      end)
      assert.is_false(ok)
      lock:with(function() end)
      assert.equal("corio.Lock(free)", tostring(lock))
    end)
  end)

  it("with(): when fn fails and the release fails too, both errors reach the caller (rule 9)", function()
    guard(function()
      local lock = corio.lock()
      -- fn raises a string after releasing the lock itself: with's
      -- release then raises too; fn's error is raised, the release's
      -- chained in err.errors (Python chains it as __context__)
      local e = catch(lock.with, lock, function() lock:release(); error("from fn", 0) end)
      assert.is_true(corio.is_error(e, "error"))
      assert.equal("from fn", e.value)
      assert.equal(2, #e.errors)
      assert.equal(e, e.errors[1])
      assert.matches("lock:release%(%): the lock is not held", tostring(e.errors[2]))
      assert.matches("from fn", tostring(e))
      -- a corio error from fn keeps its object and gets the release's appended
      local mine = corio.new_error("mine", "from fn")
      local e2 = catch(lock.with, lock, function() lock:release(); error(mine, 0) end)
      assert.equal(mine, e2)
      assert.equal(2, #e2.errors)
      assert.matches("the lock is not held", tostring(e2.errors[2]))
      -- fn cancelled: the Cancelled is not reported, the release's error is
      local e3
      corio.scope(function(s)
        e3 = catch(lock.with, lock, function() lock:release(); s:cancel(); corio.yield() end)
      end)
      assert.is_false(corio.is_cancelled(e3))
      assert.matches("lock:release%(%): the lock is not held", tostring(e3))
      -- fn succeeds: the release's error is raised
      assert.matches("the lock is not held", tostring(catch(lock.with, lock, function() lock:release() end)))
      assert.is_false(lock:locked())
    end)
  end)

  it("an owner that releases and acquires again at once queues behind the waiter (trio fairness)", function()
    guard(function()
      local lock = corio.lock()
      local log = {}
      lock:acquire()
      corio.scope(function(s)
        s:spawn(function() lock:with(function() log[#log + 1] = "waiter" end) end)
        settle()
        lock:release()
        assert.is_true(lock:locked())   -- handed to the waiter at release
        lock:with(function() log[#log + 1] = "releaser" end)
      end)
      assert.same({ "waiter", "releaser" }, log)
    end)
  end)

  it("a lock handed to a waiter cancelled before it runs is released by with(), not broken", function()
    guard(function()
      local lock = corio.lock()
      local ran
      lock:acquire()
      corio.scope(function(s)
        local t = s:spawn(function()
          lock:with(function() ran = true; corio.yield() end)
        end)
        settle()
        lock:release()     -- handed to t
        t:cancel()         -- before t ran
      end)
      assert.is_true(ran)
      assert.is_false(lock:locked())
      lock:with(function() end)   -- not broken
    end)
  end)

  it("waiters get the lock in FIFO order", function()
    guard(function()
      local lock = corio.lock()
      local order = {}
      lock:acquire()
      corio.scope(function(s)
        for i = 1, 10 do
          s:spawn(function() lock:with(function() order[#order + 1] = i end) end)
        end
        settle()
        lock:release()
      end)
      for i = 1, 10 do assert.equal(i, order[i]) end
    end)
  end)
end)

-- ---------------------------------------------------------------------
describe("sync parity: non-blocking calls in a cancelled scope (rule 3)", function()
  it("release, set, clear, close and the try_* calls work and raise no Cancelled", function()
    guard(function()
      local sem, lock, ev, ch = corio.semaphore(0), corio.lock(), corio.event(), corio.channel(1)
      lock:acquire()
      corio.scope(function(s)
        s:cancel()
        sem:release()
        lock:release()
        ev:set(); ev:clear(); ev:set()
        assert.is_true(ch:try_send(1))
        assert.same({ true, 1 }, { ch:try_recv() })
        ch:close()
        assert.is_true(corio.is_cancelled(catch(sem.acquire, sem)))
      end)
      assert.equal(1, sem.available)
      assert.is_false(lock:locked())
      assert.is_true(ev:is_set())
      assert.is_true(ch.closed)
    end)
  end)
end)

-- ---------------------------------------------------------------------
describe("sync parity: event", function()
  it("wait on a set event returns at once; is_set reports the flag", function()
    guard(function()
      local e = corio.event()
      assert.is_false(e:is_set())
      e:set()
      assert.is_true(e:is_set())
      assert.is_true(corio.move_on_after(0.5, e.wait, e))
      e:set()   -- twice: harmless
      assert.is_true(e:is_set())
    end)
  end)

  it("clear makes wait block again (asyncio's Event.clear; trio has none)", function()
    testing.autojump(function()
      local e = corio.event()
      e:set()
      e:clear()
      e:clear()
      assert.is_false(e:is_set())
      assert.is_false(corio.move_on_after(1, e.wait, e))
    end)
  end)

  it("one set wakes every waiter", function()
    guard(function()
      local e = corio.event()
      local woken = 0
      corio.scope(function(s)
        for _ = 1, 100 do s:spawn(function() e:wait(); woken = woken + 1 end) end
        settle()
        assert.equal(0, woken)
        e:set()
      end)
      assert.equal(100, woken)
    end)
  end)

  it("waiters woken by set return even if the event is cleared before they run", function()
    guard(function()
      local e = corio.event()
      local woken = 0
      corio.scope(function(s)
        for _ = 1, 3 do s:spawn(function() e:wait(); woken = woken + 1 end) end
        settle()
        e:set()
        e:clear()
      end)
      assert.equal(3, woken)
      assert.is_false(e:is_set())
    end)
  end)

  it("a cancelled waiter leaves; set still wakes the others", function()
    guard(function()
      local e = corio.event()
      local woken = {}
      corio.scope(function(s)
        local ts = {}
        for i = 1, 3 do ts[i] = s:spawn(function() e:wait(); woken[#woken + 1] = i end) end
        settle()
        ts[2]:cancel()
        settle()
        e:set()
      end)
      assert.same({ 1, 3 }, woken)
    end)
  end)
end)
