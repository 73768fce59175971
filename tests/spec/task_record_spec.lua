-- task_record_spec.lua: the rarely used parts of a task's record, pinned
-- through the public API: several joiners of one task, names, the
-- checkpoint count that testing.assert_checkpoints reads, errors and
-- deferred functions of a task's own body, and the order in which a
-- cancel wakes the tasks blocked below a scope. (These moved out of the
-- Task record, or changed form, to make it smaller.)

local corio = require("corio")
local testing = require("corio.testing")

describe("task record", function()
  it("wakes every joiner of one task, in the order they joined", function()
    local log = {}
    corio.scope(function(s)
      local ev = corio.event()
      local target = s:spawn(function()
        ev:wait()
        return "a", 2, true
      end)
      for i = 1, 3 do
        s:spawn(function()
          local a, b, c = target:join()
          log[#log + 1] = ("%d:%s,%s,%s"):format(i, a, b, tostring(c))
        end)
      end
      corio.yield()
      ev:set()
    end)
    assert.same({ "1:a,2,true", "2:a,2,true", "3:a,2,true" }, log)
  end)

  it("a cancelled joiner leaves the others waiting", function()
    local log = {}
    corio.scope(function(s)
      local ev = corio.event()
      local target = s:spawn(function()
        ev:wait()
        return 7
      end)
      local joiners = {}
      for i = 1, 3 do
        joiners[i] = s:spawn(function()
          local ok, v = pcall(target.join, target)
          log[#log + 1] = ("%d:%s:%s"):format(i, tostring(ok),
            ok and tostring(v) or tostring(v.kind))
        end)
      end
      corio.yield()
      joiners[2]:cancel()
      corio.yield()
      ev:set()
    end)
    assert.same({ "2:false:cancelled", "1:true:7", "3:true:7" }, log)
  end)

  it("gives every joiner of a failed task its error", function()
    local errs = {}
    corio.scope(function(outer)
      local ok = pcall(corio.scope, function(s)
        local ev = corio.event()
        local target = s:spawn(function()
          ev:wait()
          error("boom", 0)
        end)
        for i = 1, 2 do
          outer:spawn(function()
            local ok, e = pcall(target.join, target)
            errs[i] = ok and "no error"
              or (type(e) == "table" and e.value or e)
          end)
        end
        corio.yield()
        ev:set()
      end)
      assert.is_false(ok)
    end)
    assert.same({ "boom", "boom" }, errs)
  end)

  it("names: set, default, and after the end", function()
    local t = corio.spawn(function() corio.yield() end)
    assert.matches("^task %d+", t.name)
    t.name = "worker 1"
    assert.equal("worker 1", t.name)
    t:join()
    assert.equal("worker 1", t.name)
    local u = corio.spawn(function() end)
    u:join()
    local n = u.name
    assert.matches("^task " .. u.id, n)
    assert.equal(n, u.name)
  end)

  it("assert_checkpoints counts the calling task's checkpoints only",
    function()
      -- a scope's exit waits for its child without being a checkpoint: the
      -- child's checkpoints are not the caller's
      local ok, err = pcall(testing.assert_checkpoints, function()
        corio.scope(function(s)
          s:spawn(function() corio.sleep(0) end)
        end)
      end)
      assert.is_false(ok)
      assert.matches("without passing through a checkpoint", tostring(err))
      -- nested: an inner one that raised does not lose what the outer saw
      assert.equal(5, testing.assert_checkpoints(function()
        corio.yield()
        pcall(testing.assert_checkpoints, function() error("x") end)
        return 5
      end))
      -- nested: the inner checkpoint is the outer's too
      testing.assert_checkpoints(function()
        testing.assert_checkpoints(function() corio.yield() end)
      end)
      ok = pcall(testing.assert_checkpoints, function() return 1 end)
      assert.is_false(ok)
    end)

  it("a task's body error and its deferred functions' errors", function()
    local t
    local ok, err = pcall(corio.scope, function(s)
      t = s:spawn(function()
        corio.defer(function() error("d1", 0) end)
        corio.defer(function() error("d2", 0) end)
        error("body", 0)
      end)
    end)
    assert.is_false(ok)
    assert.equal("failed", t:status())
    local ok2, e = pcall(t.join, t)
    assert.is_false(ok2)
    local seen = {}
    for _, x in ipairs(e.errors) do
      seen[#seen + 1] = type(x) == "table" and x.value or x
    end
    assert.same({ "body", "d2", "d1" }, seen)
    assert.is_not_nil(err)
  end)

  it("deferred functions of a task's scopes run innermost first", function()
    local log = {}
    corio.scope(function(s)
      s:spawn(function()
        corio.defer(function() log[#log + 1] = "root" end)
        corio.scope(function()
          corio.defer(function() log[#log + 1] = "inner" end)
        end)
        corio.defer(function() log[#log + 1] = "root2" end)
      end)
    end)
    assert.same({ "inner", "root2", "root" }, log)
  end)

  it("a cancel wakes the tasks blocked below a scope in a fixed order",
    function()
      local log = {}
      corio.scope(function(s)
        local ev = corio.event()
        local function blocked(name)
          return function()
            local ok = pcall(ev.wait, ev)
            log[#log + 1] = name .. (ok and "" or "!")
          end
        end
        s:spawn(blocked("a"))
        s:spawn(function()
          corio.scope(function(s2)
            s2:spawn(blocked("b1"))
            s2:spawn(blocked("b2"))
            corio.shield(function()
              s2:spawn(blocked("b3"))
            end)
            blocked("b")()
          end)
        end)
        s:spawn(function()
          corio.move_on_after(100, blocked("c"))
        end)
        s:spawn(blocked("d"))
        corio.yield()
        corio.yield()
        s:cancel()
      end)
      -- depth first, the last pushed first: the scope's newest child,
      -- then a task's inner scopes before their children
      assert.equal("d! c! b! b3! b2! b1! a!", table.concat(log, " "))
    end)

  it("spawned_at: the line of each spawn, also alternating in one function",
    function()
      local here = debug.getinfo(1, "S").short_src
      local function sites()
        local by = {}
        for _, e in ipairs(corio.tasks()) do
          if e.task.name:match("^s%d") then by[e.task.name] = e.spawned_at end
        end
        return by
      end
      local want = {}
      corio.scope(function(s)
        local ev = corio.event()
        for i = 1, 2 do
          local a = s:spawn(function() ev:wait() end)
          a.name = "s" .. i .. "a"
          want[a.name] = here .. ":" .. (debug.getinfo(1, "l").currentline - 2)
          local b = s:spawn(function() ev:wait() end)
          b.name = "s" .. i .. "b"
          want[b.name] = here .. ":" .. (debug.getinfo(1, "l").currentline - 2)
        end
        corio.yield()
        assert.same(want, sites())
        ev:set()
      end)
    end)
end)
