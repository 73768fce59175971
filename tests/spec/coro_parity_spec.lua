-- coro_parity_spec.lua: corio calls inside the user's own coroutines
-- (SPEC rule 13), checked against plain Lua coroutine semantics and what
-- Python users know from async generators. Each test failed before the
-- fix committed with it.

local corio = require("corio")

describe("a generator resumed from inside a C call (rule 13)", function()
  -- The generator's own thread can yield, but the thread that resumed it
  -- sits in a C call (a table.sort comparator, a __gc): the suspension
  -- cannot pass up. It must be refused with corio's message, the
  -- operation undone, and the task must go on, not be left counted as
  -- blocked on a timer it no longer waits for.
  local function gen()
    return coroutine.wrap(function()
      while true do corio.sleep(0.001); coroutine.yield(1) end
    end)
  end

  it("from a table.sort comparator: refused with corio's message, the task goes on", function()
    local g = gen()
    local ok, err = pcall(table.sort, { 3, 1, 2 }, function(a, b) g(); return a < b end)
    assert.is_false(ok)
    assert.matches("corio: sleep cannot suspend the task here: it is called from inside a C function",
      tostring(err), 1, true)
    assert.matches("coro_parity_spec.lua:%d+:", tostring(err))
    -- the task is not left blocked: a later wait ends on time
    local t0 = corio.now()
    corio.sleep(0.01)
    assert.is_true(corio.now() - t0 < 1)
    -- and the generator, dead after its error, says so as plain Lua does
    assert.is_false((pcall(g)))
  end)

  it("from a __gc finaliser: refused, and the task's next sleep returns", function()
    local g = gen()
    local seen
    do
      local u = newproxy(true)
      getmetatable(u).__gc = function()
        local ok, e = pcall(g)
        seen = { ok, tostring(e) }
      end
    end
    collectgarbage(); collectgarbage()
    assert.is_false(seen[1])
    assert.matches("cannot suspend the task here: it is called from inside a C function", seen[2], 1, true)
    local done = corio.move_on_after(1, corio.sleep, 0.01)
    assert.is_true(done)
  end)

  it("a fast path past its budget inside such a generator keeps its results", function()
    local ch = corio.channel(1000)
    local g = coroutine.wrap(function()
      for i = 1, 200 do ch:send(i) end
      coroutine.yield("sent")
    end)
    local got
    table.sort({ 2, 1 }, function(a, b) got = got or g(); return a < b end)
    assert.equal("sent", got)
    local n = 0
    while true do
      local ok = ch:try_recv()
      if not ok then break end
      n = n + 1
    end
    assert.equal(200, n)
  end)
end)

describe("a generator whose abandoned scopes were closed (rule 13)", function()
  -- api.md: an abandoned scope is closed as if its body had raised (its
  -- defers ran, its tasks ended, the enclosing scope raised). The body
  -- must not run on afterwards inside a scope that no longer exists, with
  -- its cleanup already done (a Python generator is not resumed after
  -- aclose()): it is dead, as plain Lua says of a coroutine that raised.
  for _, kind in ipairs { "scope", "shield", "timeout", "move_on_after" } do
    it(kind .. ": is dead afterwards; resume and wrap refuse it, status says so", function()
      local log = {}
      local function body()
        corio.defer(function() log[#log + 1] = "defer" end)
        coroutine.yield(1)
        log[#log + 1] = "ran on after close"
        corio.spawn(function() log[#log + 1] = "spawned after close" end)
        coroutine.yield(2)
      end
      local function enter()
        if kind == "scope" or kind == "shield" then corio[kind](body)
        else corio[kind](5, body) end
        coroutine.yield(3)
      end
      local co = coroutine.create(enter)
      local g = coroutine.wrap(enter)
      local ok, err = pcall(corio.scope, function()
        assert.same({ true, 1 }, { coroutine.resume(co) })
        assert.equal(1, g())
      end)
      assert.is_false(ok)
      assert.matches("still open", tostring(err))
      assert.same({ "defer", "defer" }, log)
      assert.equal("dead", coroutine.status(co))
      local rok, rmsg = coroutine.resume(co)
      assert.is_false(rok)
      assert.matches("^cannot resume dead coroutine", rmsg)
      local wok, wmsg = pcall(g)
      assert.is_false(wok)
      assert.matches("^cannot resume dead coroutine", wmsg)
      -- a loop that resumes until dead ends at once
      local n = 0
      while coroutine.status(co) ~= "dead" and n < 10 do coroutine.resume(co); n = n + 1 end
      assert.equal(0, n)
      corio.sleep(0.001)
      assert.same({ "defer", "defer" }, log)
    end)
  end

  it("coroutine.status names a bad argument as plain Lua does", function()
    local ok, err = pcall(coroutine.status, 5)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'status' (coroutine expected, got number)", err, 1, true)
    assert.equal("running", coroutine.status(coroutine.running()))
  end)
end)

describe("resuming a coroutine that is not suspended (rule 13)", function()
  -- Plain Lua refuses to resume a running or normal coroutine, and the
  -- refused resume changes nothing. corio's wrapper noted the caller as
  -- that coroutine's resumer and then cleared it: the chain from a later
  -- corio call no longer reached the task, which raised the error meant
  -- for a stale copy of coroutine.resume.
  it("a normal coroutine (an outer generator) refused, the chain still suspends", function()
    local outer_co, seen
    local outer = coroutine.wrap(function()
      outer_co = coroutine.running()
      local inner = coroutine.wrap(function()
        seen = { coroutine.resume(outer_co) }
        corio.sleep(0.001)
        coroutine.yield("inner")
      end)
      coroutine.yield(inner())
      corio.sleep(0.001)
      coroutine.yield("outer")
    end)
    assert.equal("inner", outer())
    assert.is_false(seen[1])
    assert.matches("cannot resume", seen[2])
    assert.equal("outer", outer())
  end)

  it("the running coroutine itself, through resume and through its wrap function", function()
    local g
    g = coroutine.wrap(function()
      local ok, msg = coroutine.resume(coroutine.running())
      local wok, wmsg = pcall(g)
      corio.sleep(0.001)
      coroutine.yield({ ok, msg, wok, wmsg })
    end)
    local r = g()
    assert.is_false(r[1])
    assert.matches("cannot resume", r[2])
    assert.is_false(r[3])
    assert.matches("cannot resume", r[4])
  end)
end)

describe("coroutine.wrap's argument check", function()
  it("names wrap and the caller's line", function()
    local ok, err = pcall(function() local g = coroutine.wrap(5); return g end)
    assert.is_false(ok)
    assert.matches("coro_parity_spec.lua:%d+: bad argument #1 to 'wrap' %(function expected, got number%)", err)
  end)
end)

describe("closing a generator from a defer handler, as Python's aclosing (rule 13)", function()
  -- `async with aclosing(gen()) as g:` closes the generator when the block
  -- ends. In corio: corio.defer(function() g("close") end) right after the
  -- generator is made, before its first yield out of a scope. That handler
  -- was deferred before the closer of the parked scope, so LIFO ran the
  -- closer first: the scope was closed as abandoned and the enclosing
  -- scope raised, though the user closed the generator properly.
  local function gen(log)
    return coroutine.wrap(function()
      corio.scope(function(s)
        s:spawn(function()
          local ok = pcall(corio.sleep, 5)
          log[#log + 1] = ok and "child slept" or "child cancelled"
        end)
        corio.defer(function() log[#log + 1] = "gen defer" end)
        for i = 1, 10 do
          if coroutine.yield(i) == "close" then s:cancel(); break end
        end
      end)
      log[#log + 1] = "gen scope returned"
    end)
  end

  it("in a scope body: the generator closes itself, nothing raises", function()
    local log = {}
    corio.scope(function()
      local g = gen(log)
      corio.defer(function() log[#log + 1] = "aclosing"; g("close") end)
      assert.equal(1, g())
      assert.equal(2, g())
    end)
    assert.same({ "aclosing", "child cancelled", "gen defer", "gen scope returned" }, log)
  end)

  it("in a task body cut short by a deadline, the handler in a shield", function()
    local log = {}
    assert.is_false(corio.move_on_after(0.01, function()
      local g = gen(log)
      corio.defer(function() corio.shield(function() log[#log + 1] = "aclosing"; g("close") end) end)
      assert.equal(1, g())
      corio.sleep(1)
    end))
    assert.same({ "aclosing", "child cancelled", "gen defer", "gen scope returned" }, log)
  end)

  it("a handler that leaves it open: the scope is still closed as abandoned, after that handler", function()
    local log = {}
    local ok, err = pcall(corio.scope, function()
      local g = gen(log)
      corio.defer(function() log[#log + 1] = "user defer" end)
      assert.equal(1, g())
    end)
    assert.is_false(ok)
    assert.matches("still open", tostring(err))
    assert.same({ "user defer", "child cancelled", "gen defer" }, log)
  end)
end)

describe("a task's own thread resumed by another task (rule 13)", function()
  -- coroutine.running() in a task gives its thread; coroutine.resume on it
  -- from another task returned from the first task's corio call with the
  -- other's values, ran the first task's body on as the other task, and
  -- the first task failed later ("attempt to call a nil value") when the
  -- scheduler resumed its thread.
  it("is refused, and the task's wait completes as it should", function()
    local athread, slept, refused
    corio.scope(function(s)
      s:spawn(function()
        athread = coroutine.running()
        local t0 = corio.now()
        corio.sleep(0.03)
        slept = corio.now() - t0
      end)
      s:spawn(function()
        corio.sleep(0.005)
        assert.equal("suspended", coroutine.status(athread))
        refused = { coroutine.resume(athread, "bogus") }
      end)
    end)
    assert.is_false(refused[1])
    assert.matches("cannot resume the thread of a task", refused[2], 1, true)
    assert.is_true(slept >= 0.025)
  end)

  it("the running task's own thread: refused as plain Lua refuses it", function()
    local me = coroutine.running()
    local ok, msg = coroutine.resume(me)
    assert.is_false(ok)
    assert.matches("cannot resume", msg)
    local g = coroutine.wrap(function()
      coroutine.yield({ coroutine.resume(me) })
    end)
    local r = g()
    assert.is_false(r[1])
    assert.matches("cannot resume", r[2])
  end)
end)
