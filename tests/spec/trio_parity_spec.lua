-- trio_parity_spec.lua: the edge cases that trio's own tests check for
-- cancel scopes and nurseries (test_run.py, test_cancel.py, test_timeouts.py),
-- checked against corio through its public API. Where corio differs on
-- purpose (no mutable deadline or shield attribute, no cancelled_caught),
-- docs/semantics.md ("Differences from trio") says so, and the case here
-- checks what corio does instead.

local corio = require("corio")
local testing = require("corio.testing")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch

-- A generous watchdog for anything that could hang on a broken runtime.
local function guard(fn, ...)
  return corio.timeout(20, fn, ...)
end

describe("trio parity: deadlines", function()
  it("move_on_after(0) runs the body to its first checkpoint, which raises", function()
    local log = {}
    local r = { corio.move_on_after(0, function()
      log[#log + 1] = "ran"
      corio.yield()
      log[#log + 1] = "not reached"
    end) }
    assert.same({ "ran" }, log)
    assert.same({ false }, r)
  end)

  it("timeout(0) raises TimeoutError at the first checkpoint; a body without one returns", function()
    local err = catch(corio.timeout, 0, corio.sleep, 0)
    assert.equal("timeout", err.kind)
    assert.same({ "a", "b" }, { corio.timeout(0, function() return "a", "b" end) })
    assert.same({ true, 1 }, { corio.move_on_after(0, function() return 1 end) })
  end)

  it("a deadline that passed while the task ran raises at its next checkpoint (yield included)", function()
    -- trio's test_yield_briefly_checks_for_timeout
    local log = {}
    local r = corio.move_on_after(0.05, function()
      corio.yield()
      log[#log + 1] = "first yield passed"
      helpers.hold(0.1)               -- past the deadline, no checkpoint
      log[#log + 1] = "held"
      corio.yield()
      log[#log + 1] = "not reached"
    end)
    assert.is_false(r)
    assert.same({ "first yield passed", "held" }, log)
  end)

  it("the same for sleep(0), sleep(d) and gather's entry check: the first after the deadline raises", function()
    local checks = {
      sleep0 = function() corio.sleep(0) end,
      sleep = function() corio.sleep(0.001) end,
      gather = function() corio.gather({}) end,
    }
    for name, check in pairs(checks) do
      local log = {}
      local r = corio.move_on_after(0.03, function()
        helpers.hold(0.06)
        log[#log + 1] = "held"
        check()
        log[#log + 1] = "not reached"
      end)
      assert.is_false(r, name)
      assert.same({ "held" }, log, name)
    end
  end)

  it("is level-triggered: every checkpoint after the deadline raises until the scope is left", function()
    testing.autojump(function()
      local kinds = {}
      local r = corio.move_on_after(1, function()
        for _ = 1, 3 do
          local ok, e = pcall(corio.sleep, 10)
          kinds[#kinds + 1] = ok and "ok" or e.kind
        end
        local ok, e = pcall(corio.yield)
        kinds[#kinds + 1] = ok and "ok" or e.kind
      end)
      -- the body swallowed every Cancelled and returned: see the
      -- "swallowed" case below for what the scope reports then
      assert.same({ "cancelled", "cancelled", "cancelled", "cancelled" }, kinds)
      assert.is_not_nil(r)
    end)
  end)

  it("nested: an inner scope with the later deadline is cut by the outer one, which catches it", function()
    testing.autojump(function()
      local after_inner = false
      local t0 = corio.now()
      local r = corio.move_on_after(1, function()
        corio.move_on_after(5, corio.sleep, 10)
        after_inner = true
      end)
      assert.is_false(r)
      assert.is_false(after_inner)
      assert.near(1, corio.now() - t0, 1e-6)
      -- the same with timeout inside: the outer cancel passes through it
      -- as Cancelled, not as a TimeoutError of the inner scope
      local inner_err
      r = corio.move_on_after(1, function()
        local ok, e = pcall(corio.timeout, 5, corio.sleep, 10)
        inner_err = e
        error(e, 0)
      end)
      assert.is_false(r)
      assert.is_true(corio.is_cancelled(inner_err))
    end)
  end)

  it("nested: an inner deadline that fires first is caught by the inner scope", function()
    testing.autojump(function()
      local inner
      local r = { corio.timeout(5, function()
        inner = corio.move_on_after(1, corio.sleep, 10)
        return "outer body finished"
      end) }
      assert.is_false(inner)
      assert.same({ "outer body finished" }, r)
    end)
  end)

  it("two deadlines firing at the same instant: the outermost scope catches", function()
    -- trio's test_cancel_scope_nesting: scope2 and scope3 cancelled at
    -- once, scope2 (the outer) catches, scope3 does not
    testing.autojump(function()
      local after_inner = false
      local r = corio.move_on_after(1, function()
        corio.move_on_after(1, corio.sleep, 10)
        after_inner = true
      end)
      assert.is_false(r)
      assert.is_false(after_inner)
    end)
  end)

  it("two scopes cancelled at once: the outer one absorbs, the inner passes Cancelled", function()
    local after_inner, inner_err = false, nil
    local outer_r = { corio.scope(function(outer)
      local ok, e = pcall(corio.scope, function(inner)
        inner:cancel()
        outer:cancel()
        corio.sleep(10)
      end)
      inner_err = e
      if not ok then error(e, 0) end
      after_inner = true
    end) }
    assert.same({}, outer_r)
    assert.is_false(after_inner)
    assert.is_true(corio.is_cancelled(inner_err))
  end)

  it("a pending cancel that no checkpoint saw is not delivered after the scope is left", function()
    -- trio: cancel(), leave the scope without a checkpoint; the enclosing
    -- code's checkpoints do not raise
    local r = { corio.scope(function(s)
      s:cancel()
      s:cancel()                      -- idempotent
      return "body result"
    end) }
    assert.same({ "body result" }, r)
    corio.yield()
    corio.sleep(0)
    -- and a move_on_after whose deadline passed with no checkpoint after it
    assert.same({ true, "x" }, { corio.move_on_after(0.01, function()
      helpers.hold(0.03)
      return "x"
    end) })
    corio.yield()
  end)

  it("cancel() on a scope after it returned is harmless", function()
    local saved, child
    corio.scope(function(s)
      saved = s
      child = s:spawn(function() return 7 end)
    end)
    assert.is_false(saved.cancelled)
    saved:cancel()
    saved:cancel()
    assert.is_true(saved.cancelled)
    assert.equal("done", child:status())
    assert.equal(7, child:join())     -- the ended child keeps its result
    corio.sleep(0)                    -- the caller is not cancelled
    assert.equal("ok", helpers.outcome(pcall(corio.yield)))
    -- and spawning into it still raises
    local err = catch(saved.spawn, saved, function() end)
    assert.matches("has returned", tostring(err), 1, true)
  end)

  it("scope.cancelled tells whether the scope was cancelled, also when the body ignored it", function()
    -- trio's cancel_called; corio has no cancelled_caught (docs)
    local s1, s2, s3
    corio.scope(function(s) s1 = s end)
    corio.scope(function(s) s2 = s; s:cancel() end)
    local err = catch(corio.scope, function(s)
      s3 = s
      s:spawn(function() error("boom") end)
      pcall(corio.sleep, 10)
    end)
    assert.matches("boom", tostring(err))
    assert.is_false(s1.cancelled)
    assert.is_true(s2.cancelled)
    assert.is_true(s3.cancelled)
  end)

  it("scope.cancel_caught is trio's cancelled_caught", function()
    -- test_cancel_edge_cases, test_cancel_scope_nesting, test_trivial_yields
    local scopes = {}
    corio.scope(function(s) scopes.caught = s; s:cancel(); s:cancel(); corio.sleep(1) end)
    corio.scope(function(s) scopes.swallowed = s; s:cancel(); pcall(corio.sleep, 1) end)
    corio.scope(function(s) scopes.no_checkpoint = s; s:cancel() end)
    corio.scope(function(s)
      scopes.cut_child = s
      s:spawn(corio.sleep, 30)
      testing.wait_all_tasks_blocked()
      s:cancel()
    end)
    corio.scope(function(outer)
      scopes.outer = outer
      corio.scope(function(s)
        scopes.inner = s
        s:cancel()
        outer:cancel()
        corio.sleep(1)
      end)
    end)
    corio.scope(function(s) scopes.never = s; corio.yield() end)
    local want = {
      caught = { true, true }, swallowed = { true, false },
      no_checkpoint = { true, false }, cut_child = { true, true },
      outer = { true, true }, inner = { true, false }, never = { false, false },
    }
    for name, w in pairs(want) do
      assert.same(w, { scopes[name].cancelled, scopes[name].cancel_caught }, name)
    end
  end)

  it("a body that swallows its deadline's Cancelled and returns: the scope returns normally", function()
    testing.autojump(function()
      -- trio: no Cancelled reached the scope, so cancelled_caught stays
      -- false and fail_after does not raise; corio's move_on_after returns
      -- true and the results, timeout the results (docs/semantics.md)
      local r = { corio.move_on_after(1, function()
        pcall(corio.sleep, 10)
        return "swallowed"
      end) }
      assert.same({ true, "swallowed" }, r)
      assert.same({ "swallowed" }, { corio.timeout(1, function()
        pcall(corio.sleep, 10)
        return "swallowed"
      end) })
    end)
  end)

  it("an outer cancel passes through a timeout unchanged; its own deadline never fired", function()
    local err
    corio.scope(function(s)
      s:spawn(function() corio.yield(); s:cancel() end)
      local ok, e = pcall(corio.timeout, 10, corio.sleep, 10)
      err = e
      error(e, 0)
    end)
    assert.is_true(corio.is_cancelled(err))
    assert.not_equal("timeout", err.kind)
  end)
end)

describe("trio parity: shield", function()
  it("a shield in a cancelled scope blocks; the cancel is raised at the first checkpoint after it", function()
    local log = {}
    corio.scope(function(s)
      s:cancel()
      corio.shield(function()
        corio.sleep(0.01)
        corio.yield()
        log[#log + 1] = "shielded sleep done"
      end)
      log[#log + 1] = "after shield"
      local ok, e = pcall(corio.yield)
      log[#log + 1] = ok and "yield ok" or e.kind
    end)
    assert.same({ "shielded sleep done", "after shield", "cancelled" }, log)
  end)

  it("does not protect from a scope cancelled inside it", function()
    -- trio's test_cancel_shielding: innerest.cancel() inside the shield
    local log = {}
    corio.scope(function(outer)
      outer:cancel()
      corio.shield(function()
        corio.scope(function(inner)
          inner:cancel()
          local ok, e = pcall(corio.yield)
          log[#log + 1] = ok and "ok" or e.kind
        end)
        corio.yield()               -- the shield still holds the outer cancel off
        log[#log + 1] = "back in the shield"
      end)
    end)
    assert.same({ "cancelled", "back in the shield" }, log)
  end)

  it("a deadline inside the shield still applies (and is caught there)", function()
    testing.autojump(function()
      local inner
      local r = corio.move_on_after(1, function()
        corio.shield(function()
          inner = corio.move_on_after(5, corio.sleep, 100)
        end)
        corio.yield()
      end)
      assert.is_false(inner)          -- its own deadline, 5 s, fired
      assert.is_false(r)              -- the outer one raised after the shield
    end)
  end)

  it("protects tasks spawned inside it from the outer cancel", function()
    -- trio's test_cancel_shield_abort, first half
    local log = {}
    corio.scope(function(outer)
      outer:cancel()
      corio.shield(function()
        corio.scope(function(n)
          n:spawn(function()
            corio.sleep(0.01)
            log[#log + 1] = "child slept"
          end)
        end)
      end)
    end)
    assert.same({ "child slept" }, log)
  end)
end)

describe("trio parity: cancellation reaches every task", function()
  it("cancelling a scope cancels grandchildren in nested scopes at once", function()
    -- trio's test_cancel_inheritance
    local seen = {}
    guard(corio.scope, function(s)
      for _, w in ipairs({ "w1", "w2" }) do
        s:spawn(function()
          corio.scope(function(n)
            for _, l in ipairs({ "l1", "l2" }) do
              n:spawn(function()
                local ok, e = pcall(corio.sleep, math.huge)
                if not ok and corio.is_cancelled(e) then seen[#seen + 1] = w .. "-" .. l end
                error(e, 0)
              end)
            end
          end)
        end)
      end
      testing.wait_all_tasks_blocked()
      s:cancel()
    end)
    table.sort(seen)
    assert.same({ "w1-l1", "w1-l2", "w2-l1", "w2-l2" }, seen)
  end)

  it("a child spawned into a cancelled scope starts and runs to its first checkpoint", function()
    -- trio's test_precancelled_task
    local log = {}
    corio.scope(function(s)
      s:cancel()
      s:spawn(function()
        log[#log + 1] = "started"
        corio.sleep(math.huge)
        log[#log + 1] = "not reached"
      end)
    end)
    assert.same({ "started" }, log)
  end)

  it("a scope in a cancelled scope is no checkpoint: nothing raises without one", function()
    -- trio's test_trivial_yields "weird case"
    local reached = false
    corio.scope(function(outer)
      outer:cancel()
      corio.scope(function() end)
      corio.scope(function(n) n:spawn(function() end) end)
      reached = true
    end)
    assert.is_true(reached)
    -- an error raised in it comes out as itself, not as Cancelled
    local err = catch(corio.scope, function(outer)
      outer:cancel()
      corio.scope(function() error({ tag = "KeyError" }) end)
    end)
    assert.equal("KeyError", err.tag)
  end)
end)

describe("trio parity: errors in nurseries", function()
  it("an error raised while handling Cancelled wins over the cancel", function()
    local err = catch(corio.scope, function(s)
      s:cancel()
      local ok = pcall(corio.sleep, 10)
      assert(not ok)
      error("cleanup failed")
    end)
    assert.matches("cleanup failed", tostring(err))
    testing.autojump(function()
      local e2 = catch(corio.move_on_after, 1, function()
        pcall(corio.sleep, 10)
        error("after deadline")
      end)
      assert.matches("after deadline", tostring(e2))
      local e3 = catch(corio.timeout, 1, function()
        pcall(corio.sleep, 10)
        error("after deadline")
      end)
      assert.matches("after deadline", tostring(e3))
      assert.not_equal("timeout", e3.kind)
    end)
  end)

  it("a child that turns its Cancelled into an error: the scope raises that error", function()
    -- trio's test_system_task_crash_plus_Cancelled: only the ValueError
    local err = catch(corio.scope, function(s)
      s:spawn(function()
        local ok = pcall(corio.sleep, math.huge)
        assert(not ok)
        error({ tag = "ValueError" })
      end)
      s:spawn(corio.sleep, math.huge)
      testing.wait_all_tasks_blocked()
      s:cancel()
    end)
    assert.equal("error", err.kind)
    assert.equal("ValueError", err.value.tag)
    assert.equal(1, #err.errors)
  end)

  it("several children failing at once: err.errors holds all, in order", function()
    local err = catch(corio.scope, function(s)
      for i = 1, 3 do s:spawn(function() error("child " .. i, 0) end) end
    end)
    assert.equal(3, #err.errors)
    for i = 1, 3 do
      assert.equal("child " .. i, err.errors[i].value)
    end
    assert.equal(err.errors[1], err)
  end)

  it("the body raises, then a child that had not started fails: both are reported, the body's first", function()
    -- trio's test_nursery_exception_chaining_doesnt_make_context_loops
    local err = catch(corio.scope, function(s)
      s:spawn(function() error("KeyError", 0) end)
      error("ValueError", 0)
    end)
    assert.equal(2, #err.errors)
    assert.equal("ValueError", err.errors[1].value)
    assert.equal("KeyError", err.errors[2].value)
  end)

  it("a child that fails while handling the body's error is reported after it", function()
    local err = catch(corio.scope, function(s)
      s:spawn(function()
        pcall(corio.sleep, math.huge)
        error("child cleanup failed", 0)
      end)
      testing.wait_all_tasks_blocked()
      error("body failed", 0)
    end)
    assert.equal(2, #err.errors)
    assert.equal("body failed", err.errors[1].value)
    assert.equal("child cleanup failed", err.errors[2].value)
  end)

  it("outer cancel + inner nursery with cancelled children and a crasher: only the crash comes out", function()
    -- trio's test_cancel_scope_exceptiongroup_filtering
    local err = catch(corio.scope, function(outer)
      corio.scope(function(n)
        n:spawn(corio.sleep, math.huge)
        n:spawn(corio.sleep, math.huge)
        n:cancel()
        corio.shield(testing.wait_all_tasks_blocked)
        n:spawn(corio.sleep, math.huge)
        outer:cancel()
        n:spawn(function() error({ tag = "KeyError" }) end)
      end)
    end)
    assert.equal("error", err.kind)
    assert.equal("KeyError", err.value.tag)
    assert.equal(1, #err.errors)
  end)

  it("Cancelled out of a child that its own scope cancelled is no error of the scope", function()
    local r = { corio.scope(function(s)
      local t = s:spawn(corio.sleep, math.huge)
      s:spawn(function() corio.yield(); t:cancel() end)
      testing.wait_all_tasks_blocked()
      return "fine"
    end) }
    assert.same({ "fine" }, r)
    r = { corio.scope(function(s)
      s:spawn(corio.sleep, math.huge)
      testing.wait_all_tasks_blocked()
      s:cancel()
      return "fine too"
    end) }
    assert.same({ "fine too" }, r)
  end)
end)

describe("trio parity: spawning", function()
  it("a closing scope (body returned, children running) still takes children", function()
    local log = {}
    local outer_scope
    corio.scope(function(s)
      outer_scope = s
      s:spawn(function()
        corio.sleep(0.01)
        -- the body has returned by now: the scope waits for its tasks
        s:spawn(function() log[#log + 1] = "late child ran" end)
      end)
    end)
    assert.same({ "late child ran" }, log)
    local t0 = corio.now()
    local err = catch(outer_scope.spawn, outer_scope, corio.sleep, 7)
    assert.matches("has returned", tostring(err), 1, true)
    assert.is_true(corio.now() - t0 < 1)   -- raised at once, did not run
  end)

  it("a scope closing because of an error takes a child that runs to its first checkpoint", function()
    local log = {}
    local err = catch(corio.scope, function(s)
      s:spawn(function()
        pcall(corio.sleep, math.huge)   -- cancelled by the body's error
        s:spawn(function()
          log[#log + 1] = "started"
          corio.yield()
          log[#log + 1] = "not reached"
        end)
      end)
      testing.wait_all_tasks_blocked()
      error("body failed", 0)
    end)
    assert.equal("body failed", err.value or err)
    assert.same({ "started" }, log)
  end)

  it("a task joining itself or its parent raises at once", function()
    local me = corio.current()
    local e1 = catch(me.join, me)
    assert.matches("cannot join itself", tostring(e1), 1, true)
    local e2 = guard(function()
      return corio.spawn(function()
        return catch(me.join, me)
      end):join()
    end)
    assert.matches("cannot join a task it runs inside", tostring(e2), 1, true)
  end)
end)

-- Start fn in a task, let it block, cancel it with task:cancel(), and
-- return the task's outcome ("cancelled" expected) once it ended.
local function cancel_blocked(fn)
  local t = corio.spawn(fn)
  testing.wait_all_tasks_blocked()
  assert.equal("running", t:status())
  t:cancel()
  local ok, e = guard(pcall, t.join, t)
  return helpers.outcome(ok, e), t
end

describe("trio parity: cancelling a task blocked in each kind of wait", function()
  it("sleep: woken at once, its timer stopped", function()
    local t0 = corio.now()
    assert.equal("cancelled", (cancel_blocked(function() corio.sleep(30) end)))
    assert.is_true(corio.now() - t0 < 10)
    -- nothing left armed: an autojump now would find no timer of it
    assert.equal(1, #corio.tasks())
  end)

  it("channel send (unbuffered): delivers nothing, the channel works on", function()
    local ch = corio.channel()
    assert.equal("cancelled", (cancel_blocked(function() ch:send("lost?") end)))
    assert.same({ false }, { ch:try_recv() })
    corio.spawn(function() ch:send("next") end)
    assert.equal("next", guard(ch.recv, ch))
  end)

  it("channel send (buffer full): delivers nothing, the buffered value stays", function()
    local ch = corio.channel(1)
    ch:send("kept")
    assert.equal("cancelled", (cancel_blocked(function() ch:send("lost?") end)))
    assert.same({ true, "kept" }, { ch:try_recv() })
    assert.same({ false }, { ch:try_recv() })
  end)

  it("channel recv: loses nothing, the next value goes to the next receiver", function()
    local ch = corio.channel()
    local got = {}
    local first = corio.spawn(function() got[#got + 1] = { "first", ch:recv() } end)
    local second = corio.spawn(function() got[#got + 1] = { "second", ch:recv() } end)
    testing.wait_all_tasks_blocked()
    first:cancel()
    guard(ch.send, ch, "v")
    guard(second.join, second)
    assert.equal("cancelled", helpers.outcome(pcall(first.join, first)))
    assert.same({ { "second", "v" } }, got)
  end)

  it("semaphore acquire: a cancelled waiter takes no permit, the next waiter does", function()
    local sem = corio.semaphore(0)
    local log = {}
    local a = corio.spawn(function() sem:acquire(); log[#log + 1] = "a" end)
    local b = corio.spawn(function() sem:acquire(); log[#log + 1] = "b" end)
    testing.wait_all_tasks_blocked()
    a:cancel()
    sem:release()
    guard(b.join, b)
    assert.equal("cancelled", helpers.outcome(pcall(a.join, a)))
    assert.same({ "b" }, log)
    assert.equal(0, sem.available)
    sem:release()
    assert.equal(1, sem.available)
  end)

  it("lock acquire: a cancelled waiter never owns it, the next waiter does", function()
    local lock = corio.lock()
    local log = {}
    lock:acquire()
    local a = corio.spawn(function() lock:acquire(); log[#log + 1] = "a"; lock:release() end)
    local b = corio.spawn(function() lock:acquire(); log[#log + 1] = "b"; lock:release() end)
    testing.wait_all_tasks_blocked()
    a:cancel()
    lock:release()
    guard(b.join, b)
    assert.equal("cancelled", helpers.outcome(pcall(a.join, a)))
    assert.same({ "b" }, log)
    assert.is_false(lock:locked())
    guard(lock.acquire, lock)   -- free for the next one
    lock:release()
  end)

  it("event wait: the cancelled waiter ends, a later set wakes the others", function()
    local ev = corio.event()
    local a = corio.spawn(function() ev:wait() end)
    local b = corio.spawn(function() ev:wait(); return "woke" end)
    testing.wait_all_tasks_blocked()
    a:cancel()
    ev:set()
    assert.equal("woke", guard(b.join, b))
    assert.equal("cancelled", helpers.outcome(pcall(a.join, a)))
  end)

  it("join: the cancelled joiner ends, the joined task is not affected", function()
    local ev = corio.event()
    local target = corio.spawn(function() ev:wait(); return "target done" end)
    assert.equal("cancelled", (cancel_blocked(function() target:join() end)))
    assert.equal("running", target:status())
    ev:set()
    assert.equal("target done", guard(target.join, target))
  end)

  it("gather: cancelling the gatherer cancels the gathered functions", function()
    local seen = {}
    local outcome = cancel_blocked(function()
      corio.gather({
        function() local ok, e = pcall(corio.sleep, 30); seen[1] = helpers.outcome(ok, e); error(e, 0) end,
        function() local ok, e = pcall(corio.sleep, 30); seen[2] = helpers.outcome(ok, e); error(e, 0) end,
      })
    end)
    assert.equal("cancelled", outcome)
    assert.same({ "cancelled", "cancelled" }, seen)
  end)

  it("to_thread: the caller gets Cancelled at once, the worker's result is dropped", function()
    local t0 = helpers.mono()
    local r = guard(corio.move_on_after, 0.05, corio.to_thread, function()
      -- a second of the process's CPU time: at least half a second of
      -- wall time on a worker (os.time() + 1 may be a few ms away)
      local t = os.clock() + 1
      while os.clock() < t do end
      return "late"
    end)
    assert.is_false(r)
    assert.is_true(helpers.mono() - t0 < 0.9)
    -- the pool still serves calls
    assert.equal(3, guard(corio.to_thread, function(a, b) return a + b end, 1, 2))
  end)

  it("a corio.fs call in a cancelled scope raises on entry and leaves the file usable", function()
    local fs = require("corio.fs")
    local path = os.tmpname()
    local f = fs.open(path, "w")
    f:write("hello\n")
    f:close()
    local g = fs.open(path)
    local err = helpers.catch_cancelled(g.read, g, "l")
    assert.is_true(corio.is_cancelled(err))
    assert.equal("hello", g:read("l"))
    g:close()
    os.remove(path)
  end)

  it("a corio.fs read cancelled while its request runs returns what that request read (rule 7)", function()
    local fs = require("corio.fs")
    local path = os.tmpname()
    local chunk = {}
    for i = 1, 4096 do chunk[i] = string.char(i % 251) end
    local data = string.rep(table.concat(chunk), 512)   -- 2 MiB
    local w = assert(io.open(path, "wb")); w:write(data); w:close()
    local f = fs.open(path, "rb", { buffer_size = 2 ^ 21 })
    local t = corio.spawn(function() return f:read(2 ^ 20) end)
    testing.wait_all_tasks_blocked()
    t:cancel()
    -- the task was blocked in the buffer fill, which cannot be undone:
    -- it is awaited and the read returns its bytes; the cancel would
    -- surface at the task's next checkpoint (SPEC rule 7)
    local ok, first = guard(pcall, t.join, t)
    assert.is_true(ok, tostring(first))
    assert.equal(data:sub(1, 2 ^ 20), first)
    assert.equal(data:sub(2 ^ 20 + 1), f:read("a"))
    f:close()
    os.remove(path)
  end)

  it("a corio.fs read of many buffer fills cancelled midway loses no byte", function()
    local fs = require("corio.fs")
    local path = os.tmpname()
    local data = string.rep("0123456789abcdef", 2 ^ 18)   -- 4 MiB
    local w = assert(io.open(path, "wb")); w:write(data); w:close()
    local f = fs.open(path, "rb", { buffer_size = 2 ^ 16 })
    local head = f:read(10)
    local t = corio.spawn(function() return f:read("a") end)
    for _ = 1, 3 do corio.yield() end
    t:cancel()
    local ok, r = guard(pcall, t.join, t)
    if ok then
      assert.equal(data, head .. r)
    else
      assert.is_true(corio.is_cancelled(r))
      assert.equal(data, head .. f:read("a"))
    end
    f:close()
    os.remove(path)
  end)

  it("an http request whose transport blocks: the deadline cuts it, the client works on", function()
    local http = require("corio.http")
    local block = true
    local c = http.client { transport = function()
      if block then corio.sleep(math.huge) end
      return { status = 200, body = "ok" }
    end }
    local err = catch(corio.timeout, 0.05, c.get, c, "http://mock/")
    assert.equal("timeout", err.kind)
    block = false
    assert.equal("ok", guard(c.get, c, "http://mock/"):text())
    c:close()
  end)
end)

describe("trio parity: a waiter woken, then cancelled before it ran", function()
  -- trio: once a task is rescheduled with its result, a cancel cannot
  -- abort the wait; the result stands and the cancel surfaces at the
  -- next checkpoint (corio: rule 3, nothing taken or lost)
  it("keeps the permit, lock, value or result it was handed", function()
    local sem = corio.semaphore(0)
    local a = corio.spawn(function()
      sem:acquire()
      return "permit", helpers.outcome(pcall(corio.yield))
    end)
    testing.wait_all_tasks_blocked()
    sem:release(); a:cancel()
    assert.same({ "permit", "cancelled" }, { guard(a.join, a) })
    assert.equal(0, sem.available)

    local lock = corio.lock()
    lock:acquire()
    local b = corio.spawn(function()
      lock:acquire()
      local owner = lock:locked()
      lock:release()
      return owner
    end)
    testing.wait_all_tasks_blocked()
    lock:release(); b:cancel()
    assert.is_true(guard(b.join, b))
    assert.is_false(lock:locked())

    local ch = corio.channel()
    local c = corio.spawn(function() return ch:recv() end)
    testing.wait_all_tasks_blocked()
    assert.is_true(ch:try_send("v")); c:cancel()
    assert.equal("v", guard(c.join, c))

    local ch2 = corio.channel()
    local d = corio.spawn(function() ch2:send("w"); return "sent" end)
    testing.wait_all_tasks_blocked()
    assert.same({ true, "w" }, { ch2:try_recv() }); d:cancel()
    assert.equal("sent", guard(d.join, d))

    local ev = corio.event()
    local e = corio.spawn(function() ev:wait(); return "woke" end)
    testing.wait_all_tasks_blocked()
    ev:set(); e:cancel()
    assert.equal("woke", guard(e.join, e))
  end)
end)

describe("trio parity: more scope cases", function()
  it("a sibling's failure passes through a move_on_after as Cancelled, not as its timeout", function()
    local inner
    local err = catch(corio.scope, function(s)
      s:spawn(function() corio.yield(); error("boom", 0) end)
      local ok, e = pcall(corio.move_on_after, 30, corio.sleep, 30)
      inner = helpers.outcome(ok, e)
      if not ok then error(e, 0) end
      inner = inner .. " and returned " .. tostring(e)
    end)
    assert.equal("boom", err.value)
    assert.equal("cancelled", inner)
  end)

  it("two timeouts with the same deadline: the outer raises TimeoutError, the inner passes Cancelled", function()
    testing.autojump(function()
      local inner
      local err = catch(corio.timeout, 1, function()
        local ok, e = pcall(corio.timeout, 1, corio.sleep, 10)
        inner = helpers.outcome(ok, e)
        error(e, 0)
      end)
      assert.equal("timeout", err.kind)
      assert.equal("cancelled", inner)
    end)
  end)

  it("a zero deadline inside a shield in a cancelled scope is caught by its own scope", function()
    local r, after
    corio.scope(function(s)
      s:cancel()
      r = { corio.shield(corio.move_on_after, 0, corio.sleep, 1) }
      after = helpers.outcome(pcall(corio.yield))
    end)
    assert.same({ false }, r)
    assert.equal("cancelled", after)
  end)

  it("task:cancel() on a task whose body returned and waits for children: join raises Cancelled", function()
    -- SPEC: "task:cancel() -- join() then raises Cancelled"; the cancel
    -- cut the children short, so the task did not finish its work (as a
    -- move_on_after whose deadline cut its children: semantics.md)
    local child
    local t = corio.spawn(function()
      corio.spawn(function()
        local ok, e = pcall(corio.sleep, 30)
        child = helpers.outcome(ok, e)
        error(e, 0)
      end)
      return "body done"
    end)
    testing.wait_all_tasks_blocked()
    assert.equal("running", t:status())
    t:cancel()
    local ok, e = guard(pcall, t.join, t)
    assert.is_false(ok)
    assert.is_true(corio.is_cancelled(e))
    assert.equal("cancelled", t:status())
    assert.equal("cancelled", child)
    -- its scope is not failed by it (rule 2)
    assert.equal("ok", helpers.outcome(pcall(corio.yield)))
  end)

  it("a task whose children all ended before its cancel keeps its results", function()
    local t = corio.spawn(function()
      corio.spawn(function() end)
      return "body done"
    end)
    guard(function() while t:status() ~= "done" do corio.yield() end end)
    t:cancel()                        -- a no-op on an ended task
    assert.equal("body done", t:join())
  end)

  it("a task that catches its own cancel and returns ends done (as a scope whose body swallowed it)", function()
    local t = corio.spawn(function()
      corio.current():cancel()
      return helpers.outcome(pcall(corio.yield))
    end)
    assert.equal("cancelled", guard(t.join, t))
    assert.equal("done", t:status())
  end)

  it("a deadline that cut the children of a timeout body counts as caught", function()
    testing.autojump(function()
      local err = catch(corio.timeout, 1, function()
        corio.spawn(corio.sleep, 10)
        return "body"
      end)
      assert.equal("timeout", err.kind)
      assert.same({ false }, { corio.move_on_after(1, function()
        corio.spawn(corio.sleep, 10)
        return "body"
      end) })
    end)
  end)

  it("a deadline that fires while the scope waits only for shielded tasks cuts nothing", function()
    -- an intended difference from trio (semantics.md, "Differences from trio")
    testing.autojump(function()
      local t0 = corio.now()
      local r = { corio.move_on_after(1, function()
        corio.scope(function(s) s:spawn(corio.shield, corio.sleep, 3) end)
        return "finished"
      end) }
      assert.same({ true, "finished" }, r)
      assert.near(3, corio.now() - t0, 1e-6)
      -- an unshielded task cut by it makes the deadline caught, and the
      -- code after the inner scope does not run
      local after = false
      assert.same({ false }, { corio.move_on_after(1, function()
        corio.scope(function(s) s:spawn(corio.sleep, 3); return "body" end)
        after = true
      end) })
      assert.is_false(after)
    end)
  end)

  it("an error raised inside a shield in a cancelled scope comes out as itself; the cancel follows", function()
    local e1, e2
    corio.scope(function(s)
      s:cancel()
      local ok, e = pcall(corio.shield, function()
        corio.sleep(0.001)
        error("in shield", 0)
      end)
      e1 = ok and "ok" or e
      e2 = helpers.outcome(pcall(corio.yield))
    end)
    assert.equal("in shield", e1)
    assert.equal("cancelled", e2)
  end)

  it("a child's failure while the body is shielded: the body finishes the shield, then its next checkpoint raises", function()
    local log = {}
    local err = catch(corio.scope, function(s)
      s:spawn(function() corio.yield(); error("child", 0) end)
      corio.shield(function() corio.sleep(0.02); log[#log + 1] = "shield done" end)
      log[#log + 1] = helpers.outcome(pcall(corio.yield))
    end)
    assert.equal("child", err.value)
    assert.same({ "shield done", "cancelled" }, log)
  end)

  it("sem:with and lock:with release when the task is cancelled inside", function()
    local sem, lock = corio.semaphore(1), corio.lock()
    local t = corio.spawn(function()
      sem:with(function() lock:with(function() corio.sleep(30) end) end)
    end)
    testing.wait_all_tasks_blocked()
    assert.same({ 0, true }, { sem.available, lock:locked() })
    t:cancel()
    assert.equal("cancelled", helpers.outcome(guard(pcall, t.join, t)))
    assert.same({ 1, false }, { sem.available, lock:locked() })
  end)

  it("a channel iterator in a cancelled scope stops at its next recv, the rest stays", function()
    local ch = corio.channel(4)
    ch:send(1); ch:send(2)
    local got = {}
    corio.scope(function(s)
      for v in ch:iter() do got[#got + 1] = v; s:cancel() end
    end)
    assert.same({ 1 }, got)
    assert.same({ true, 2 }, { ch:try_recv() })
  end)

  it("a child that cancels its scope and then fails: the failure is the scope's error", function()
    local err = catch(corio.scope, function(s)
      s:spawn(function() s:cancel(); error("child failed", 0) end)
      corio.sleep(30)
    end)
    assert.equal("child failed", err.value)
    assert.equal(1, #err.errors)
  end)

  it("an error raised after scope:cancel() with no checkpoint in between wins", function()
    local err = catch(corio.scope, function(s) s:cancel(); error("E", 0) end)
    assert.equal("E", err)
  end)
end)

describe("trio parity: fast paths, bad timeouts, broken locks, first and map", function()
  it("every blocking call raises in a cancelled scope even when it could complete at once, taking nothing", function()
    -- trio's fast paths start with checkpoint_if_cancelled
    local sem = corio.semaphore(1)
    local lock = corio.lock()
    local ch = corio.channel(2)
    ch:send("kept")
    local ev = corio.event()
    ev:set()
    local ended = corio.spawn(function() return 1 end)
    ended:join()
    local calls = {
      acquire = function() sem:acquire() end,
      with = function() sem:with(function() end) end,
      lock = function() lock:acquire() end,
      recv = function() ch:recv() end,
      send = function() ch:send("lost?") end,
      wait = function() ev:wait() end,
      join = function() ended:join() end,
      to_thread = function() corio.to_thread(function() return 1 end) end,
      gather = function() corio.gather({ function() return 1 end }) end,
      yield = corio.yield,
    }
    for name, call in pairs(calls) do
      local err = helpers.catch_cancelled(call)
      assert.is_true(corio.is_cancelled(err), name)
    end
    assert.equal(1, sem.available)
    assert.is_false(lock:locked())
    assert.same({ true, "kept" }, { ch:try_recv() })
    assert.same({ false }, { ch:try_recv() })
  end)

  it("negative and NaN timeouts raise; math.huge is no deadline", function()
    assert.matches("seconds must be >= 0", tostring(catch(corio.timeout, -1, function() end)), 1, true)
    assert.matches("seconds is NaN", tostring(catch(corio.move_on_after, 0 / 0, function() end)), 1, true)
    testing.autojump(function()
      assert.same({ true, "inf" }, { corio.move_on_after(math.huge, function()
        corio.sleep(1e6)
        return "inf"
      end) })
    end)
  end)

  it("a lock whose owner is cancelled while holding it is broken, for its waiter and later (trio 0.27)", function()
    local lock = corio.lock()
    corio.scope(function(s)
      local owner = s:spawn(function() lock:acquire(); corio.sleep(math.huge) end)
      local waiter = s:spawn(function() return helpers.catch(lock.acquire, lock) end)
      testing.wait_all_tasks_blocked()
      owner:cancel()
      local err = guard(waiter.join, waiter)
      assert.equal("broken", err.kind)
    end)
    assert.equal("broken", catch(lock.acquire, lock).kind)
  end)

  it("first cancels the losers; map cut by a deadline leaves no task behind", function()
    local loser
    local v, i = corio.first({
      function()
        local ok, e = pcall(corio.sleep, 30)
        loser = helpers.outcome(ok, e)
        error(e, 0)
      end,
      function() corio.yield(); return "win" end,
    })
    assert.same({ "win", 2 }, { v, i })
    assert.equal("cancelled", loser)
    testing.autojump(function()
      local done = 0
      local r = corio.move_on_after(0.05, corio.map, { 1, 2, 3, 4, 5, 6 }, function(x)
        corio.sleep(0.03)
        done = done + 1
        return x
      end, { limit = 2 })
      assert.is_false(r)
      assert.equal(2, done)
    end)
    assert.equal(1, #corio.tasks())
  end)
end)

describe("trio parity: test_run.py basics", function()
  it("corio.run inside a task raises and names corio.scope (test_run_nesting)", function()
    local err = catch(corio.run, function() return 1 end)
    assert.matches("called inside a running task", tostring(err), 1, true)
    assert.matches("corio.scope", tostring(err), 1, true)
    local t = corio.spawn(function() return pcall(corio.run, function() end) end)
    local ok, e = guard(t.join, t)
    assert.is_false(ok)
    assert.matches("corio.scope", tostring(e), 1, true)
  end)

  it("two loopers interleave round by round (test_basic_interleave)", function()
    local record = {}
    corio.scope(function(s)
      for _, who in ipairs({ "a", "b" }) do
        s:spawn(function()
          for i = 0, 2 do
            record[#record + 1] = who .. i
            corio.yield()
          end
        end)
      end
    end)
    assert.same({ "a0", "b0", "a1", "b1", "a2", "b2" }, record)
  end)

  it("a crash cancels a sibling looping on checkpoints (test_task_crash_propagation)", function()
    local looper
    local err = catch(corio.scope, function(s)
      s:spawn(function()
        local ok, e = pcall(function() while true do corio.yield() end end)
        looper = helpers.outcome(ok, e)
        error(e, 0)
      end)
      s:spawn(function() error("argh", 0) end)
    end)
    assert.equal("argh", err.value)
    assert.equal("cancelled", looper)
  end)

  it("a child crash wakes the body blocked for ever (test_child_crash_wakes_parent)", function()
    local err = catch(guard, corio.scope, function(s)
      s:spawn(function() error("this is a crash", 0) end)
      corio.sleep(math.huge)
    end)
    assert.equal("this is a crash", err.value)
  end)

  it("cancelling the outermost of 1000 nested scopes reaches the innermost (test_very_deep_cancel_scope_nesting)", function()
    local depth, innermost = 0, nil
    corio.scope(function(outer)
      local function nest(d)
        if d == 0 then
          outer:cancel()
          innermost = helpers.outcome(pcall(corio.sleep, 30))
          return
        end
        corio.scope(function() depth = depth + 1; nest(d - 1) end)
      end
      nest(1000)
    end)
    assert.equal(1000, depth)
    assert.equal("cancelled", innermost)
  end)

  it("cancelling a scope reaches the end of a 2000-task chain", function()
    local leaf
    guard(corio.scope, function(s)
      local function chain(d)
        if d == 0 then
          local ok, e = pcall(corio.sleep, 30)
          leaf = helpers.outcome(ok, e)
          error(e, 0)
        end
        corio.spawn(chain, d - 1)
      end
      s:spawn(chain, 2000)
      testing.wait_all_tasks_blocked()
      s:cancel()
    end)
    assert.equal("cancelled", leaf)
    assert.equal(1, #corio.tasks())
  end)
end)
