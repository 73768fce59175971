-- regress_spec.lua: regression tests for bugs found in the core, one per
-- bug, each written before its fix.
local corio = require "corio"

describe("regressions", function()
  it("a task's own defer does not overwrite its number result", function()
    local t = corio.spawn(function()
      corio.defer(function() end)
      return 42
    end)
    assert.same({ 42 }, { t:join() })
  end)

  it("a task's defer that blocks in a shield keeps the results", function()
    local t1 = corio.spawn(function()
      corio.defer(function() corio.shield(corio.sleep, 0.001) end)
      return true
    end)
    local t2 = corio.spawn(function()
      corio.defer(function() corio.shield(corio.sleep, 0.001) end)
      return 1, "two", 3
    end)
    assert.same({ true }, { t1:join() })
    assert.same({ 1, "two", 3 }, { t2:join() })
  end)

  it("an error in a task's own defer is wrapped like a body error", function()
    local t
    local ok, err = pcall(corio.scope, function(s)
      t = s:spawn(function()
        corio.defer(function() error("in defer", 0) end)
        return 1
      end)
    end)
    assert.is_false(ok)
    assert.equal("error", err.kind)
    assert.equal("in defer", err.value)
    assert.equal("failed", t:status())
  end)

  it("recv returns exactly one value for a value, two at the end", function()
    local ch = corio.channel(1)
    ch:send("x")
    ch:close()
    assert.equal(1, select("#", ch:recv()))
    assert.same({ nil, "closed" }, { ch:recv() })
  end)

  it("a deadline that cuts a child short makes move_on_after false", function()
    local r = corio.move_on_after(0.01, function()
      corio.spawn(corio.sleep, 10)
    end)
    assert.is_false(r)
  end)

  it("an error in a scope body keeps the line that raised it", function()
    local line
    local t
    pcall(corio.scope, function(s)
      t = s:spawn(function()
        corio.scope(function()
          corio.sleep(0)
          line = debug.getinfo(1, "l").currentline + 1
          error("inscope")
        end)
      end)
    end)
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.truthy(err.traceback:find("regress_spec.lua:" .. line, 1, true),
      err.traceback)
  end)

  it("a Cancelled from joining a cancelled task fails the joiner", function()
    local sibling
    local ok, err = pcall(corio.scope, function(s)
      local victim = s:spawn(corio.sleep, 10)
      victim:cancel()
      s:spawn(function()
        local okc, e = pcall(corio.sleep, 10)
        sibling = okc and "ok" or e.kind
      end)
      victim:join()                 -- raises Cancelled in a live task
    end)
    assert.is_false(ok)
    assert.equal("cancelled", err.kind)
    assert.equal("cancelled", sibling)  -- it was an error: siblings stop
  end)

  it("sleep_real is not cut short by time spent outside the loop", function()
    local t0 = os.clock()
    while os.clock() - t0 < 0.05 do end   -- busy, no checkpoint
    local w0 = corio.now()
    require("corio.testing").sleep_real(0.05)
    assert.is_true(corio.now() - w0 >= 0.045)
  end)

  it("a scope that cannot wait at a C boundary hands its tasks to the body", function()
    local child, ended
    local t = corio.spawn(function()
      local ok = pcall(table.sort, { 3, 1, 2 }, function(a, b)
        corio.scope(function(s)
          child = s:spawn(function()
            corio.defer(function() ended = corio.now() end)
            corio.sleep(10)
          end)
        end)                          -- cannot wait for its task here
        return a < b
      end)
      assert(not ok, "the scope's exit should have raised")
      corio.sleep(0.01)               -- the task goes on: it is not cancelled
      return "body done"
    end)
    -- the task waited for the orphan, which the failed scope cancelled
    assert.equal("body done", t:join())
    assert.equal("cancelled", child:status())
    assert.is_number(ended)
  end)

  it("an error object whose __tostring fails is still reported", function()
    local bad = setmetatable({}, { __tostring = function() error("no") end })
    local ok, err = pcall(corio.scope, function(s)
      s:spawn(function() error(bad) end)
    end)
    assert.is_false(ok)
    assert.equal("error", err.kind)
    assert.is_true(rawequal(bad, err.value))
    assert.truthy(err.message:find("table value", 1, true))
  end)
end)
