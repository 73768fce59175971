-- hunt_core_spec.lua: regressions found by a bug hunt through the core
-- runtime (scopes, errors, sync objects, gather). Each test failed before
-- the fix committed with it.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch

-- the messages (or values) of err.errors, in order
local function messages(err)
  local out = {}
  for i, e in ipairs(err.errors) do
    local m = type(e) == "table" and (e.value or e.message) or e
    out[i] = tostring(m):match("([%w_]+)$")
  end
  return out
end

describe("errors crossing several boundaries (rule 2, rule 9)", function()
  it("keep every error of an inner scope when it leaves an outer scope", function()
    local err = catch(corio.scope, function(s)
      s:spawn(function()
        corio.scope(function(s2)
          s2:spawn(function() error("a", 0) end)
          s2:spawn(function() error("b", 0) end)
        end)
      end)
    end)
    assert.same({ "a", "b" }, messages(err))
  end)

  it("keep a task's deferred handler error chained to its body's error", function()
    local err = catch(corio.scope, function(s)
      s:spawn(function()
        corio.defer(function() error("handler", 0) end)
        error("body", 0)
      end)
    end)
    assert.same({ "body", "handler" }, messages(err))
  end)

  it("keep the errors of a scope that ends a task (gather's return_errors)", function()
    local _, errs = corio.gather({ function()
      corio.scope(function(s)
        s:spawn(function() error("c1", 0) end)
        s:spawn(function() error("c2", 0) end)
      end)
    end }, { return_errors = true })
    assert.same({ "c1", "c2" }, messages(errs[1]))
  end)

  it("merge an inner scope's errors with a sibling's", function()
    local err = catch(corio.scope, function(s)
      s:spawn(function()
        corio.scope(function(s2)
          s2:spawn(function() error("a", 0) end)
          s2:spawn(function() error("b", 0) end)
        end)
      end)
      s:spawn(function() error("c", 0) end)
    end)
    -- c fails first: a and b run only once the inner scope spawned them
    assert.same({ "c", "a", "b" }, messages(err))
  end)
end)

describe("a scope left out of order by a user coroutine (rule 13)", function()
  -- A generator's open scopes go with it (rule 13): resumed inside another
  -- scope, its scope sits inside that one, and leaving it is in order.
  -- (Session 7 raised here, as the scope seemed left out of order.)
  it("carries a generator's open scope into the scope that resumes it, and leaves the task's scopes usable", function()
    local gen = coroutine.wrap(function()
      corio.scope(function() coroutine.yield(1) end)
      coroutine.yield(2)
    end)
    assert.equal(1, gen())
    assert.equal(2, corio.scope(function()
      return gen()   -- leaves the generator's scope inside this one
    end))
    collectgarbage()
    collectgarbage()
    -- the task's scope chain is intact: spawn, wait and cancel still work
    local t = corio.spawn(function() corio.sleep(0.001) return 5 end)
    assert.equal(5, t:join())
    assert.is_false(corio.move_on_after(0.001, corio.sleep, 1))
    corio.scope(function(s) s:spawn(function() corio.sleep(0.001) end) end)
  end)

  it("closes the scope of an abandoned coroutine when the enclosing scope is left", function()
    local err = catch(corio.scope, function()
      local gen = coroutine.wrap(function()
        corio.move_on_after(0.001, function() coroutine.yield(1) end)
      end)
      gen()   -- suspended inside its move_on_after, never resumed
    end)
    assert.matches("entered inside it by another coroutine was still open", tostring(err))
    collectgarbage()
    collectgarbage()
    -- the abandoned deadline does not cancel this task later
    corio.sleep(0.005)
    local t = corio.spawn(function() return 5 end)
    assert.equal(5, t:join())
  end)
end)

-- SPEC: defer runs "when the innermost body ends ... however it ends";
-- a body abandoned by its coroutine ends when its scope is closed.
describe("scopes abandoned by a user coroutine run their deferred functions", function()
  local kinds = {
    scope = function(body) return corio.scope(function() return body() end) end,
    timeout = function(body) return corio.timeout(5, body) end,
    move_on_after = function(body) return corio.move_on_after(5, body) end,
    shield = function(body) return corio.shield(body) end,
  }
  for name, enter in pairs(kinds) do
    it(name .. ": LIFO, in the task that closes them, when the enclosing scope is left", function()
      local log = {}
      local me
      local err = catch(corio.scope, function()
        me = corio.current()
        local gen = coroutine.wrap(function()
          enter(function()
            corio.defer(function()
              log[#log + 1] = "outer" .. (corio.current() == me and "+" or "-")
            end)
            enter(function()
              corio.defer(function() log[#log + 1] = "inner1" end)
              corio.defer(function() log[#log + 1] = "inner2" end)
              coroutine.yield(1)
            end)
          end)
        end)
        gen()   -- suspended in two scopes, never resumed
        log[#log + 1] = "body"
      end)
      assert.matches("entered inside it by another coroutine was still open", tostring(err))
      assert.same({ "body", "inner2", "inner1", "outer+" }, log)
    end)
  end

  it("chain an error raised in such a deferred function to the abandonment error", function()
    local err = catch(corio.scope, function()
      local gen = coroutine.wrap(function()
        corio.move_on_after(5, function()
          corio.defer(function() error("handler", 0) end)
          coroutine.yield(1)
        end)
      end)
      gen()
    end)
    assert.matches("still open", tostring(err))
    local found = false
    for _, e in ipairs(err.errors or {}) do
      if type(e) == "table" and e.value == "handler" then found = true end
    end
    assert.is_true(found, "the handler's error is not in err.errors")
  end)

  it("cancel and await the abandoned scope's tasks", function()
    local state = "none"
    catch(corio.scope, function()
      local gen = coroutine.wrap(function()
        corio.scope(function(s)
          s:spawn(function()
            state = "running"
            local ok = pcall(corio.sleep, 5)
            state = ok and "slept" or "cancelled"
          end)
          coroutine.yield(1)
        end)
      end)
      gen()
      corio.yield()
    end)
    assert.equal("cancelled", state)
  end)
end)

describe("the tasks of a scope a suspended generator holds", function()
  it("are listed by corio.tasks() and awaited when the generator is resumed", function()
    local n0 = #corio.tasks()
    local done = false
    local gen = coroutine.wrap(function()
      corio.scope(function(s)
        s:spawn(function() corio.sleep(0.01); done = true end)
        coroutine.yield(1)
      end)
      return "end"
    end)
    assert.equal(1, gen())
    assert.equal(n0 + 1, #corio.tasks())
    assert.equal("end", gen())
    assert.is_true(done)
    assert.equal(n0, #corio.tasks())
  end)

  it("are cancelled when the scope the generator yielded out to is cancelled", function()
    local state, seen = "none", nil
    local err = catch(corio.scope, function(outer)
      local gen = coroutine.wrap(function()
        corio.scope(function(s)
          s:spawn(function()
            state = "running"
            state = pcall(corio.sleep, 5) and "slept" or "cancelled"
          end)
          coroutine.yield(1)
        end)
      end)
      gen()
      corio.yield()
      outer:cancel()
      -- the task is cancelled now, not only once the outer scope ends
      corio.shield(function() corio.sleep(0.01) end)
      seen = state
    end)
    assert.equal("cancelled", seen)
    assert.matches("still open", tostring(err))
  end)
end)

-- A generator abandoned in a timeout or move_on_after at the top of a task
-- body: its scope used to stay the task's innermost scope, so its
-- deadline cut the task's own later sleep short, and it was closed at the
-- task's end without its deferred functions.
describe("a scope abandoned at the top of a task body", function()
  -- A generator enters move_on_after(0.01), yields out of it and is
  -- abandoned; then its caller sleeps 0.05 s, which the abandoned deadline
  -- must not cut short. Logs "slept" (or "cut short"), and "defer" when
  -- the abandoned scope is closed.
  local function abandon_then_sleep(log)
    local g = coroutine.wrap(function()
      corio.move_on_after(0.01, function()
        corio.defer(function() log[#log + 1] = "defer" end)
        coroutine.yield(1)
        corio.sleep(1)
      end)
    end)
    g()
    local t0 = corio.now()
    local ok = pcall(corio.sleep, 0.05)
    log[#log + 1] = (ok and corio.now() - t0 >= 0.045) and "slept" or "cut short"
  end

  it("does not cancel the task's later calls, and is closed with its defers when the body ends", function()
    local log = {}
    local err = catch(corio.scope, function(s) s:spawn(function()
      abandon_then_sleep(log)
    end) end)
    assert.same({ "slept", "defer" }, log)
    assert.matches("still open", tostring(err))
  end)

  it("inside the task's own scopes, is taken off above them only", function()
    -- The first scope a generator enters while no other is open: the
    -- wrappers find the scope current before the resume afterwards (the
    -- innermost one the task's own code entered), and must not take the
    -- task's own scopes off with the generator's.
    -- The inner move_on_after raises the abandonment error when its body
    -- ends, so neither returns.
    local log = {}
    local err = catch(corio.scope, function(s) s:spawn(function()
      corio.move_on_after(5, function()
        corio.move_on_after(5, function() abandon_then_sleep(log) end)
        log[#log + 1] = "inner returned"
      end)
      log[#log + 1] = "outer returned"
    end) end)
    assert.same({ "slept", "defer" }, log)
    assert.matches("still open", tostring(err))
  end)

  it("keeps its deadline for the generator that is resumed later", function()
    local gen = coroutine.wrap(function()
      return corio.move_on_after(0.02, function()
        for i = 1, 3 do coroutine.yield(i) end
        corio.sleep(1)   -- past the deadline: moves on
        return "not reached"
      end)
    end)
    assert.equal(1, gen())
    corio.sleep(0.03)   -- past the generator's deadline: not cancelled here
    assert.equal(2, gen())
    assert.equal(3, gen())
    local t0 = corio.now()
    assert.is_false(gen())   -- its sleep is cut short by its own deadline
    assert.is_true(corio.now() - t0 < 0.5)
  end)
end)

describe("gather, map and first given a cancelled Task", function()
  local function cancelled_task()
    local t = corio.spawn(function() corio.sleep(10) end)
    corio.yield()
    t:cancel()
    corio.yield()
    assert.equal("cancelled", t:status())
    return t
  end

  it("gather with return_errors reports its Cancelled in errors[i]", function()
    local t = cancelled_task()
    local results, errors = corio.gather({ t, function() return 2 end },
      { return_errors = true })
    assert.equal(2, results[2])
    assert.is_true(corio.is_cancelled(errors[1]))
  end)

  it("map with return_errors reports a joined task's Cancelled in errors[i]", function()
    local t = cancelled_task()
    local results, errors = corio.map({ t, 5 }, function(x)
      if type(x) == "number" then return x end
      return x:join()
    end, { return_errors = true })
    assert.equal(5, results[2])
    assert.is_true(corio.is_cancelled(errors[1]))
  end)

  it("first counts it as a failure and lets another function win", function()
    local t = cancelled_task()
    local v, i = corio.first({ t, function() corio.sleep(0.001) return "w" end })
    assert.equal("w", v)
    assert.equal(2, i)
  end)

  it("gather with return_errors still lets an outer cancel through", function()
    local reached = false
    assert.is_false(corio.move_on_after(0.001, function()
      corio.gather({ function() corio.sleep(1) end }, { return_errors = true })
      reached = true
    end))
    assert.is_false(reached)
  end)
end)

describe("argument checks", function()
  it("map names a non-table options argument", function()
    local err = catch(corio.map, { 1 }, function(x) return x end, 5)
    assert.matches("bad argument #3 to 'map' %(table expected, got number%)", tostring(err))
  end)
end)

describe("a scope whose exit raised before it was left", function()
  it("is closed when the enclosing scope is left, so the task is not left cancelled", function()
    local leave = require("corio.core").scope_leave
    local err = catch(corio.scope, function()
      corio.scope(function()
        -- make the inner scope's exit raise just before it leaves
        debug.sethook(function()
          if debug.getinfo(2, "f").func == leave then
            debug.sethook()
            error("exit failed", 0)
          end
        end, "c")
      end)
    end)
    debug.sethook()
    assert.equal("exit failed", err)
    corio.sleep(0)   -- raised Cancelled: the task stayed in the dead scope
    local t = corio.spawn(function() return 7 end)
    assert.equal(7, t:join())
  end)

  it("after a stack overflow in deeply nested scopes, the task goes on", function()
    local function nest(k)
      if k == 100000 then return end
      return corio.scope(function() return nest(k + 1) end)
    end
    local err = catch(nest, 0)
    assert.matches("stack overflow", tostring(err))
    corio.sleep(0)
    assert.is_false(corio.move_on_after(0.001, corio.sleep, 1))
  end)
end)

describe("a user's error table with its own errors field", function()
  it("is one error of the scope, its field not taken for an error list", function()
    local mine = { errors = { "field a", "field b" } }
    local err = catch(corio.scope, function(s)
      s:spawn(function() error("other", 0) end)
      error(mine)   -- the body's own error: recorded as raised
    end)
    assert.equal(2, #err.errors)
    assert.equal(mine, err.errors[1].value)
    assert.equal("other", err.errors[2].value)
    assert.same({ "field a", "field b" }, mine.errors)
  end)
end)

describe("a method called with no self", function()
  it("names what was given (nothing), not a table of corio's", function()
    -- "no value" from a C method, "nil" through a Lua wrapper
    local function got(err) return tostring(err):match("expected, got ([%a ]-);") end
    local t = corio.spawn(function() end)
    local err = catch(t.status)
    assert.matches("bad self to 'status'", tostring(err))
    assert.equal("no value", got(err))
    err = catch(corio.semaphore(1).release)
    assert.matches("bad self to 'release'", tostring(err))
    assert.is_true(got(err) == "nil" or got(err) == "no value")
  end)
end)

describe("tostring of a semaphore", function()
  it("shows a count above 2^31 as it is, not wrapped to a negative int", function()
    local s = corio.semaphore(2 ^ 31)
    assert.equal("corio.Semaphore(available=2147483648)", tostring(s))
    s:acquire()
    assert.equal("corio.Semaphore(available=2147483647)", tostring(s))
  end)
end)

describe("corio.testing.sleep_real", function()
  it("sleeps on for math.huge and huge seconds instead of returning at once", function()
    local testing = require("corio.testing")
    for _, secs in ipairs({ math.huge, 1e300, 2 ^ 64 / 1000 }) do
      assert.is_false(corio.move_on_after(0.01, testing.sleep_real, secs))
    end
  end)
end)

describe("semaphore and channel sizes far out of range", function()
  -- checked before any cast: casting such a double to an integer is
  -- undefined behaviour in C
  it("raise a bad argument error", function()
    for _, n in ipairs({ 1e300, 2 ^ 64, -math.huge }) do
      assert.matches("bad argument #1 to 'semaphore'", tostring(catch(corio.semaphore, n)))
      assert.matches("bad argument #1 to 'channel'", tostring(catch(corio.channel, n)))
    end
    assert.matches("bad argument #1 to 'semaphore'", tostring(catch(corio.semaphore, math.huge)))
  end)
end)

describe("lock:with and semaphore:with outside a loop (rule 11)", function()
  it("run fn holding the lock under a stock luajit", function()
    local script = [[
local corio = require("corio")
print(corio.lock():with(function(a) return "in", a end, 1))
print(corio.semaphore(1):with(function() return "sem" end))
]]
    local cmd = ("%s -e %q 2>&1"):format(os.getenv("LUAJIT") or "luajit", script)
    local out = corio.to_thread(function(c, path, cpath)
      local p = io.popen(("LUA_PATH=%q LUA_CPATH=%q %s"):format(path, cpath, c))
      local o = p:read("*a")
      p:close()
      return o
    end, cmd,
      os.getenv("CORIO_LUA_PATH") or "./lua/?.lua;./lua/?/init.lua;;",
      os.getenv("CORIO_LUA_CPATH") or "./build/lib/lua/5.1/?.so;;")
    assert.equal("in\t1\nsem\n", out)
  end)
end)

describe("a coroutine that entered a scope in one task, resumed by another", function()
  -- The scope goes with the coroutine (rule 13): the other task resumes
  -- the body inside its own chain and, leaving the scope, waits for its
  -- task. (Session 7 raised there: the scope was still the owner's.)
  it("takes the scope over: the other task waits for its tasks, the owner is not woken", function()
    local gen, a_ok, a_elapsed, b_ok, b_err, b_elapsed
    -- on the virtual clock: the times below do not depend on the load
    require("corio.testing").autojump(pcall, corio.scope, function(s)
      s:spawn(function()
        gen = coroutine.wrap(function()
          corio.scope(function(s2)
            s2:spawn(function() corio.sleep(0.02) end)
            coroutine.yield()
          end)
        end)
        gen()
        local t0 = corio.now()
        a_ok = pcall(corio.sleep, 0.2)
        a_elapsed = corio.now() - t0
      end)
      s:spawn(function()
        corio.sleep(0.001)
        local t0 = corio.now()
        b_ok, b_err = pcall(gen)
        b_elapsed = corio.now() - t0
      end)
    end)
    assert.is_true(b_ok, tostring(b_err))
    assert.is_true(b_elapsed >= 0.015)   -- waited for the scope's task
    -- the end of the scope's task did not wake the owner out of its sleep
    assert.is_false(a_ok and a_elapsed < 0.15)
  end)

  it("leaves it from the owner's chain when it had no tasks", function()
    local gen
    local a = corio.spawn(function()
      gen = coroutine.wrap(function()
        corio.scope(function() coroutine.yield() end)
        return "gen done"
      end)
      gen()
      corio.sleep(0.01)   -- the other task finishes gen meanwhile
      local child_done = false
      corio.scope(function(s)
        s:spawn(function() corio.sleep(0.005) child_done = true end)
      end)
      return child_done
    end)
    corio.sleep(0.001)
    assert.equal("gen done", gen())
    assert.is_true(a:join())
  end)
end)

describe("a coroutine suspended in a corio call of one task, resumed by another", function()
  it("refuses, and the first task's call completes as it should", function()
    local gen = coroutine.wrap(function()
      while true do
        corio.sleep(0.02)
        coroutine.yield("tick")
      end
    end)
    local co = coroutine.create(function() corio.sleep(0.02) return "co done" end)
    local a = corio.spawn(function() return gen() end)
    local a2 = corio.spawn(function() return select(2, coroutine.resume(co)) end)
    corio.sleep(0.005)
    local err = catch(gen)
    assert.matches("suspended in a corio call", tostring(err))
    local ok, msg = coroutine.resume(co)
    assert.is_false(ok)
    assert.matches("suspended in a corio call", msg)
    assert.equal("tick", a:join())
    assert.equal("co done", a2:join())
    assert.equal("tick", gen())   -- free again once the call returned
  end)
end)

describe("defer handlers that defer or spawn (rule 1, rule 9)", function()
  it("run a function deferred by a scope's handler", function()
    local log = {}
    corio.scope(function()
      corio.defer(function()
        log[#log + 1] = "handler"
        corio.defer(function() log[#log + 1] = "nested" end)
      end)
    end)
    assert.same({ "handler", "nested" }, log)
  end)

  it("run a function deferred by a task's handler", function()
    local log = {}
    corio.spawn(function()
      corio.defer(function()
        log[#log + 1] = "handler"
        corio.defer(function() log[#log + 1] = "nested" end)
      end)
    end):join()
    assert.same({ "handler", "nested" }, log)
  end)

  it("wait for a task spawned into the scope by a handler", function()
    local done = false
    corio.scope(function(s)
      corio.defer(function()
        s:spawn(function() corio.sleep(0.01) done = true end)
      end)
    end)
    assert.is_true(done)
  end)
end)

describe("a task spawned into a scope just as its last task ended (rule 1)", function()
  it("is waited for before the scope returns", function()
    local done = false
    local sref
    local ev = corio.event()
    corio.spawn(function()
      ev:wait()
      -- the scope's only task has ended and woken the scope's owner,
      -- which has not run yet: the scope has not returned
      sref:spawn(function() corio.sleep(0.01) done = true end)
    end)
    corio.scope(function(s)
      sref = s
      s:spawn(function() corio.sleep(0.001) ev:set() end)
    end)
    assert.is_true(done)
  end)
end)

describe("user coroutines that yield out of scopes, shared between tasks", function()
  -- Found by the random test below under ASan (seed 264 of a longer run):
  -- the scope a generator yielded out of is closed when its enclosing
  -- scope ends, and that waits for the inner scope's task; another task
  -- resumed the generator meanwhile, took the inner scope over, and the
  -- closing task waited for good (a deadlock). Such a resume is refused.
  it("a generator whose scopes are being closed cannot be resumed meanwhile", function()
    local testing = require("corio.testing")
    local gen, resume_ok, resume_err, x_ok, x_err
    testing.autojump(function()
      corio.scope(function(s)
        s:spawn(function()
          x_ok, x_err = pcall(corio.scope, function()
            gen = coroutine.wrap(function()
              corio.scope(function(inner)
                inner:spawn(function()   -- takes 1 s to end once cancelled
                  corio.defer(function() corio.shield(corio.sleep, 1) end)
                  corio.sleep(10)
                end)
                coroutine.yield("in")
              end)
              return "gen done"
            end)
            assert.equal("in", gen())
          end)   -- ends with gen's scope open: closing it waits 1 s
        end)
        s:spawn(function()
          corio.sleep(0.5)   -- while that scope is being closed
          resume_ok, resume_err = pcall(gen)
        end)
      end)
    end)
    assert.is_false(resume_ok)
    assert.truthy(tostring(resume_err):find("scopes are being closed", 1, true), tostring(resume_err))
    assert.is_false(x_ok)
    assert.truthy(tostring(x_err):find("was still open", 1, true), tostring(x_err))
  end)

  -- Generators that yield inside scope, move_on_after and shield bodies,
  -- resumed by random tasks, abandoned and collected. Before the fixes
  -- above this crashed (SIGSEGV) or hung for most seeds.
  it("never crash, hang or leave a task behind", function()
    -- seeds 1..20 (STRESS_SEEDS=n: 1..n), and 264, which deadlocked
    -- before a resume of a coroutine being closed was refused
    local seeds = {}
    for i = 1, tonumber(os.getenv("STRESS_SEEDS")) or 20 do seeds[i] = i end
    seeds[#seeds + 1] = 264
    for _, seed0 in ipairs(seeds) do
      local seed = seed0
      local function rng() seed = (seed * 1103515245 + 12345) % 2147483648; return seed end
      local function pick(n) return rng() % n + 1 end
      local gens = {}
      local function newgen()
        local g = coroutine.wrap(function()
          for i = 1, 3 do
            local k = pick(4)
            if k == 1 then
              corio.scope(function(s)
                s:spawn(function() corio.sleep(0.001) end)
                coroutine.yield(i)
              end)
            elseif k == 2 then
              corio.move_on_after(0.002, function() coroutine.yield(i); corio.sleep(0.001) end)
            elseif k == 3 then
              corio.sleep(0.001)
              coroutine.yield(i)
            else
              corio.shield(function() coroutine.yield(i) end)
            end
          end
        end)
        gens[#gens + 1] = g
        return g
      end
      local function any() return gens[pick(#gens)] or newgen() end
      local function use()
        local k = pick(6)
        if k == 1 then pcall(newgen())
        elseif k == 2 then pcall(any())
        elseif k == 3 then
          pcall(corio.scope, function() pcall(pick(2) == 1 and newgen() or any()); corio.sleep(0.001) end)
        elseif k == 4 then collectgarbage()
        elseif k == 5 then corio.sleep(rng() % 3 / 1000)
        else
          pcall(corio.move_on_after, 0.002, function() pcall(any()); corio.sleep(0.003) end)
        end
      end
      helpers.no_tasks_left(function()
        pcall(corio.scope, function(s)
          for _ = 1, 6 do s:spawn(function() for _ = 1, 15 do pcall(use) end end) end
        end)
      end)
    end
    -- this task's scopes are intact
    corio.sleep(0)
    assert.equal(3, corio.spawn(function() return 3 end):join())
  end)
end)

-- Values handed to a woken task were made on its suspended thread. An
-- allocation there can run a __gc finaliser on that thread, and one that
-- raises, even inside its own pcall, wrecked it (segfault).
describe("hunt: a finaliser that raises while a blocked task is woken", function()
  local junk = helpers.raising_garbage
  local function with_raising_finalisers(body)
    helpers.with_busy_gc(function()
      for _ = 1, 1500 do
        junk()
        junk()
        body(junk)
      end
    end)
  end

  it("a joiner handed the Cancelled of the task it joins", function()
    local seen = 0
    with_raising_finalisers(function()
      corio.scope(function(s)
        local t = s:spawn(function() corio.sleep(1) end)
        s:spawn(function()
          local ok, err = pcall(t.join, t)
          if not ok and corio.is_cancelled(err) then seen = seen + 1 end
        end)
        corio.yield()
        t:cancel()
      end)
    end)
    assert.equal(1500, seen)
  end)

  it("a receiver woken by close", function()
    local seen = 0
    with_raising_finalisers(function(junk)
      local ch = corio.channel(0)
      corio.scope(function(s)
        s:spawn(function()
          local v, why = ch:recv()
          if v == nil and why == "closed" then seen = seen + 1 end
        end)
        corio.yield()
        junk()
        ch:close()
      end)
    end)
    assert.equal(1500, seen)
  end)
end)
