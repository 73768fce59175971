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
