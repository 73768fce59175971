-- gather_spec.lua: SPEC §1 corio.gather (both forms), corio.map (limit,
-- return_errors) and corio.first. Cancellation in a cancelled caller is
-- covered in scope_spec.lua (rule 3); bad arguments in errors_spec.lua.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch, new_log, near, outcome = helpers.catch, helpers.new_log, helpers.near, helpers.outcome
local testing = require("corio.testing")

local function autojump(fn) return testing.autojump(fn) end

describe("corio.gather", function()
  it("results[i] is the first value of fns[i], whatever the finishing order",
    function()
      autojump(function()
        local t0 = corio.now()
        local r = corio.gather({
          function() corio.sleep(3); return "a", "extra" end,
          function() corio.sleep(1); return "b" end,
          function() corio.sleep(2); return "c" end,
        })
        assert.same({ "a", "b", "c" }, r)
        near(3, corio.now() - t0) -- concurrently, not one after another
      end)
    end)

  it("starts the functions in list order", function()
    local log, add = new_log()
    corio.gather({
      function() add(1) end,
      function() add(2) end,
      function() add(3) end,
    })
    assert.same({ 1, 2, 3 }, log)
  end)

  it("accepts Tasks and functions mixed", function()
    autojump(function()
      local t = corio.spawn(function() corio.sleep(1); return "task", "x" end)
      local r = corio.gather({
        function() return "fn" end,
        t,
        function() corio.sleep(2); return "fn2" end,
      })
      assert.same({ "fn", "task", "fn2" }, r)
    end)
  end)

  it("a Task given is joined, not owned: a failure cancels the wait, not the Task",
    function()
      autojump(function()
        local t = corio.spawn(function() corio.sleep(1); return "t" end)
        local err = catch(corio.gather, { function() error("x", 0) end, t })
        assert.equal("x", err.value)
        assert.equal("running", t:status())
        assert.equal("t", t:join())
        local t2 = corio.spawn(function() corio.sleep(1); return "t2" end)
        assert.same({ "fast", 1 }, { corio.first({ function() return "fast" end, t2 }) })
        assert.equal("running", t2:status())
        assert.equal("t2", t2:join())
      end)
    end)

  it("keeps nil results in their slots", function()
    local r = corio.gather({
      function() return 1 end,
      function() return nil end,
      function() return 3 end,
    })
    assert.equal(1, r[1])
    assert.is_nil(r[2])
    assert.equal(3, r[3])
  end)

  it("returns an empty table for no functions", function()
    assert.same({}, corio.gather({}))
  end)

  it("rule 2: a failure cancels the others; gather raises after they ended",
    function()
      local E = { "E" }
      local log, add = new_log()
      autojump(function()
        local t0 = corio.now()
        local err = catch(corio.gather, {
          function()
            local ok, e = pcall(corio.sleep, 10)
            add("sibling " .. outcome(ok, e))
            corio.shield(function() corio.sleep(1) end)
            add("sibling cleanup done")
            error(e, 0)
          end,
          function() corio.sleep(1); error(E) end,
        })
        add("gather raised")
        near(2, corio.now() - t0)
        assert.equal("error", err.kind)
        assert.is_true(rawequal(E, err.value))
        assert.equal(1, #err.errors) -- the sibling's Cancelled is not listed
      end)
      assert.same({ "sibling cancelled", "sibling cleanup done",
        "gather raised" }, log)
    end)

  it("rule 2: err.errors lists every real error in order", function()
    local EA, EB = { "A" }, { "B" }
    local err = catch(corio.gather, {
      function() error(EA) end,
      function() error(EB) end,
      function() corio.sleep(10) end,
    })
    assert.is_true(rawequal(EA, err.value))
    assert.equal(2, #err.errors)
    assert.is_true(rawequal(EA, err.errors[1].value))
    assert.is_true(rawequal(EB, err.errors[2].value))
  end)

  it("rule 10: wraps a string error, keeps a corio error object", function()
    local err = catch(corio.gather, { function() error("plain", 0) end })
    assert.equal("error", err.kind)
    assert.equal("plain", err.value)
    assert.matches("plain", err.message)

    local timeout_err
    local err2 = catch(corio.gather, {
      function()
        local ok, e = pcall(corio.timeout, 0, corio.yield)
        assert(not ok)
        timeout_err = e
        error(e)
      end,
    })
    assert.equal("timeout", timeout_err.kind)
    assert.is_true(rawequal(timeout_err, err2))
  end)

  it("return_errors: returns results and errors, nobody is cancelled",
    function()
      local E = { "E" }
      autojump(function()
        local t0 = corio.now()
        local results, errors = corio.gather({
          function() return "a" end,
          function() corio.sleep(0.5); error(E) end,
          function() corio.sleep(1); return "c" end,
        }, { return_errors = true })
        near(1, corio.now() - t0)
        assert.equal("a", results[1])
        assert.is_nil(results[2])
        assert.equal("c", results[3])
        assert.equal("table", type(errors))
        assert.is_nil(errors[1])
        assert.equal("error", errors[2].kind)
        assert.is_true(rawequal(E, errors[2].value))
        assert.is_nil(errors[3])
      end)
    end)

  it("return_errors: keeps corio error objects",
    function()
      local timeout_err
      local results, errors = corio.gather({
        function()
          local ok, e = pcall(corio.timeout, 0, corio.yield)
          timeout_err = e
          error(e)
        end,
        function() return 2 end,
      }, { return_errors = true })
      assert.is_true(rawequal(timeout_err, errors[1]))
      assert.is_nil(results[1])
      assert.equal(2, results[2])
      assert.is_nil(errors[2])
    end)

  it("return_errors: with no failure errors is an empty table", function()
    local results, errors = corio.gather({
      function() return 1 end,
      function() return 2 end,
    }, { return_errors = true })
    assert.same({ 1, 2 }, results)
    assert.equal("table", type(errors))
    assert.is_nil(next(errors))
  end)

  it("cancelling the caller cancels the functions", function()
    local log, add = new_log()
    autojump(function()
      local t0 = corio.now()
      local r = corio.move_on_after(1, function()
        corio.gather({
          function()
            corio.defer(function() add("d1") end)
            corio.sleep(5)
          end,
          function()
            corio.defer(function() add("d2") end)
            corio.sleep(5)
          end,
        })
        add("not reached")
      end)
      assert.is_false(r)
      near(1, corio.now() - t0)
    end)
    table.sort(log)
    assert.same({ "d1", "d2" }, log)
  end)
end)

describe("corio.map", function()
  it("calls fn(item, i) for every item and keeps the order", function()
    autojump(function()
      local r = corio.map({ "a", "b", "c" }, function(item, i)
        corio.sleep(4 - i)
        return item .. i, "extra"
      end)
      assert.same({ "a1", "b2", "c3" }, r)
    end)
  end)

  it("runs at most limit calls at a time, starting them in order", function()
    local log, add = new_log()
    autojump(function()
      local running, max_running = 0, 0
      local t0 = corio.now()
      local r = corio.map({ 10, 20, 30, 40, 50, 60 }, function(item, i)
        add(i)
        running = running + 1
        if running > max_running then max_running = running end
        corio.sleep(1)
        running = running - 1
        return item + 1
      end, { limit = 2 })
      assert.same({ 11, 21, 31, 41, 51, 61 }, r)
      assert.equal(2, max_running)
      near(3, corio.now() - t0)
    end)
    assert.same({ 1, 2, 3, 4, 5, 6 }, log)
  end)

  it("without a limit runs every call at once", function()
    autojump(function()
      local running, max_running = 0, 0
      local t0 = corio.now()
      corio.map({ 1, 2, 3, 4, 5 }, function()
        running = running + 1
        if running > max_running then max_running = running end
        corio.sleep(1)
        running = running - 1
      end)
      assert.equal(5, max_running)
      near(1, corio.now() - t0)
    end)
  end)

  it("a limit of 1 runs the calls one after another", function()
    local log, add = new_log()
    corio.map({ 1, 2, 3 }, function(item)
      add("start " .. item)
      corio.sleep(0.005)
      add("end " .. item)
    end, { limit = 1 })
    assert.same({ "start 1", "end 1", "start 2", "end 2", "start 3", "end 3" },
      log)
  end)

  it("returns an empty table for no items", function()
    local called = false
    assert.same({}, corio.map({}, function() called = true end))
    assert.is_false(called)
  end)

  it("rule 2: an error cancels the running calls and starts no more", function()
    local E = { "E" }
    local log, add = new_log()
    autojump(function()
      local err = catch(corio.map, { 1, 2, 3, 4, 5 }, function(item)
        add("start " .. item)
        if item == 2 then corio.sleep(0.5); error(E) end
        local ok, e = pcall(corio.sleep, 1)
        add(item .. " " .. outcome(ok, e))
        if not ok then error(e, 0) end
      end, { limit = 2 })
      assert.is_true(rawequal(E, err.value))
      assert.equal(1, #err.errors)
    end)
    assert.same({ "start 1", "start 2", "1 cancelled" }, log)
  end)

  it("return_errors: returns results and errors, the others go on", function()
    local E = { "E" }
    local results, errors = corio.map({ 1, 2, 3 }, function(item)
      corio.sleep(0.001 * item)
      if item == 2 then error(E) end
      return item * 10
    end, { return_errors = true, limit = 2 })
    assert.equal(10, results[1])
    assert.is_nil(results[2])
    assert.equal(30, results[3])
    assert.is_nil(errors[1])
    assert.equal("error", errors[2].kind)
    assert.is_true(rawequal(E, errors[2].value))
    assert.is_nil(errors[3])
  end)
end)

describe("corio.first", function()
  it("the first to succeed wins; the rest are cancelled", function()
    local log, add = new_log()
    autojump(function()
      local t0 = corio.now()
      local v, i = corio.first({
        function() add("1 " .. outcome(pcall(corio.sleep, 3))); return "a" end,
        function() corio.sleep(1); return "b", "extra" end,
        function() add("3 " .. outcome(pcall(corio.sleep, 2))); return "c" end,
      })
      assert.equal("b", v)
      assert.equal(2, i)
      near(1, corio.now() - t0)
    end)
    table.sort(log)
    assert.same({ "1 cancelled", "3 cancelled" }, log)
  end)

  it("a failure does not win", function()
    autojump(function()
      local t0 = corio.now()
      local v, i = corio.first({
        function() corio.sleep(0.5); error("lost", 0) end,
        function() corio.sleep(1); return "two" end,
        function() corio.sleep(2); return "three" end,
      })
      assert.same({ "two", 2 }, { v, i })
      near(1, corio.now() - t0)
    end)
  end)

  it("returns only after the losers ended", function()
    local log, add = new_log()
    autojump(function()
      local v = corio.first({
        function() corio.sleep(1); return "fast" end,
        function()
          corio.defer(function()
            corio.shield(function() corio.sleep(1) end)
            add("loser cleanup done")
          end)
          corio.sleep(10)
        end,
      })
      add("first returned " .. v)
    end)
    assert.same({ "loser cleanup done", "first returned fast" }, log)
  end)

  it("once one has won, the losers' errors are dropped, cleanup errors included",
    function()
      autojump(function()
        local v, i = corio.first({
          function() corio.sleep(0.5); error("loser failed before the win") end,
          function() corio.sleep(1); return "won" end,
          function()
            local ok, err = pcall(corio.sleep, 10)
            assert(not ok and corio.is_cancelled(err))
            error("loser failed in its cleanup")
          end,
        })
        assert.equal("won", v)
        assert.equal(2, i)
      end)
    end)

  it("if every function fails it raises the first error, .errors lists all",
    function()
      local E1, E2 = { 1 }, { 2 }
      autojump(function()
        local t0 = corio.now()
        local err = catch(corio.first, {
          function() corio.sleep(1); error(E1) end,
          function() corio.sleep(2); error(E2) end,
        })
        near(2, corio.now() - t0)
        assert.equal("error", err.kind)
        assert.is_true(rawequal(E1, err.value))
        assert.equal(2, #err.errors)
        assert.is_true(rawequal(E1, err.errors[1].value))
        assert.is_true(rawequal(E2, err.errors[2].value))
      end)
    end)
end)
