-- busted_spec.lua: SPEC §6, the busted integration (lua/corio/busted.lua)
-- seen from a spec: async bodies in every block kind, each its own root
-- task, and the timeout API. Run it with `corio test`. What must fail (a
-- timeout, a task left running, assertions in children, string errors) is
-- in tests/spec/fixtures/busted/, run by tests/busted/driver.lua.

local corio = require("corio")
local cb = require("corio.busted")

local log = {}
local function add(v) log[#log + 1] = v end

local function pack(...)
  return { n = select("#", ...), ... }
end

describe("async bodies", function()
  local hook_task

  setup(function()
    corio.sleep(0.01)
    add("setup")
  end)

  teardown(function()
    corio.sleep(0.01)
    add("teardown")
  end)

  before_each(function()
    corio.sleep(0.01)
    hook_task = corio.current()
    add("before_each")
  end)

  after_each(function()
    corio.sleep(0.01)
    add("after_each")
  end)

  it("setup and before_each ran as tasks before the test", function()
    assert.are.same({ "setup", "before_each" }, log)
  end)

  it("after_each ran after the previous test", function()
    assert.are.same({ "setup", "before_each", "after_each", "before_each" },
      log)
  end)

  it("runs the test body as its own root task", function()
    local me = corio.current()
    assert.is_not_nil(me)
    assert.are.equal("running", me:status())
    local tasks = corio.tasks()
    local found = false
    for _, e in ipairs(tasks) do
      if rawequal(e.task, me) then found = true end
      -- the hooks' tasks ended with their own loop runs
      assert.is_false(rawequal(e.task, hook_task))
    end
    assert.is_true(found, "the test's task is not in corio.tasks()")
    assert.is_false(rawequal(me, hook_task))
  end)

  it("sleeps on the runtime's clock", function()
    local t0 = corio.now()
    corio.sleep(0.05)
    assert.is_true(corio.now() - t0 >= 0.045)
  end)

  it("spawns and joins children", function()
    local a = corio.spawn(function(x) corio.sleep(0.02) return x * 2 end, 21)
    local b = corio.spawn(function() corio.yield() return "b", "c" end)
    assert.are.equal(42, a:join())
    assert.are.same({ n = 2, "b", "c" }, pack(b:join()))
  end)

  it("passes values through a channel", function()
    local ch = corio.channel()
    corio.spawn(function()
      for i = 1, 5 do ch:send(i) end
      ch:close()
    end)
    local got = {}
    for v in ch:iter() do got[#got + 1] = v end
    assert.are.same({ 1, 2, 3, 4, 5 }, got)
  end)

  it("waits for the children of a scope", function()
    local order = {}
    corio.scope(function(s)
      s:spawn(function() corio.sleep(0.03) order[#order + 1] = "slow" end)
      s:spawn(function() corio.sleep(0.01) order[#order + 1] = "fast" end)
    end)
    assert.are.same({ "fast", "slow" }, order)
  end)

  it("catches a child's error with pcall and goes on", function()
    local ok, err = pcall(function()
      corio.scope(function(s)
        s:spawn(function() error("child failed", 0) end)
        corio.sleep(1)
      end)
    end)
    assert.is_false(ok)
    assert.are.equal("error", err.kind)
    assert.are.equal("child failed", err.value)
    corio.sleep(0.01)
  end)

  it("gathers", function()
    local r = corio.gather({
      function() corio.sleep(0.02) return 1 end,
      function() corio.sleep(0.01) return 2 end,
    })
    assert.are.same({ 1, 2 }, r)
  end)

  it("does not count a child that finishes without blocking", function()
    corio.spawn(function() add("quick child") end)
  end)

  it("ran that child before the test ended", function()
    local found = false
    for _, v in ipairs(log) do
      if v == "quick child" then found = true end
    end
    assert.is_true(found)
  end)

  it("runs an async finally", function()
    finally(function()
      corio.sleep(0.01)
      add("finally")
    end)
    corio.sleep(0.01)
  end)

  it("ran the finally before after_each", function()
    local n = #log
    -- ..., "finally", "after_each", "before_each" (this test's)
    assert.are.same({ "finally", "after_each", "before_each" },
      { log[n - 2], log[n - 1], log[n] })
  end)
end)

describe("teardown of the previous block", function()
  it("ran as a task", function()
    assert.are.equal("teardown", log[#log])
  end)
end)

describe("lazy_setup and lazy_teardown", function()
  local ready = false

  lazy_setup(function()
    corio.sleep(0.01)
    ready = true
  end)

  lazy_teardown(function()
    corio.sleep(0.01)
    ready = false
  end)

  it("ran lazy_setup as a task", function()
    assert.is_true(ready)
  end)
end)

insulate("insulate", function()
  it("runs async bodies", function()
    corio.sleep(0.01)
    assert.is_not_nil(corio.current())
  end)
end)

expose("expose", function()
  it("runs async bodies", function()
    corio.sleep(0.01)
    assert.is_not_nil(corio.current())
  end)
end)

describe("corio.busted.timeout", function()
  cb.timeout(2)

  it("gives this block's tests its timeout", function()
    corio.sleep(0.01)
  end)

  it("wraps one body and returns it", cb.timeout(0.5, function()
    corio.sleep(0.05)
  end))

  it("returns the function it is given", function()
    local f = function() end
    assert.are.equal(f, cb.timeout(1, f))
    assert.are.equal(f, cb.timeout(false, f))
  end)

  it("rejects a bad number of seconds", function()
    assert.has_error(function() cb.timeout(-1) end)
    assert.has_error(function() cb.timeout(0) end)
    assert.has_error(function() cb.timeout(0 / 0) end)
    assert.has_error(function() cb.timeout("1") end)
    assert.has_error(function() cb.timeout(1, "not a function") end)
  end)

  it("cannot set a block's timeout from inside a test", function()
    local ok, err = pcall(cb.timeout, 1)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("file or describe block", 1, true))
  end)

  describe("switched off", function()
    cb.timeout(false)

    it("still runs async bodies", function()
      corio.sleep(0.01)
    end)
  end)
end)

describe("corio.testing.autojump under the test's timeout", function()
  cb.timeout(1)

  it("sleeps an hour of virtual time in a test with a 1 s timeout",
    function()
      local testing = require("corio.testing")
      local t0 = os.time()
      testing.autojump(function()
        local v0 = corio.now()
        corio.sleep(3600)
        -- seconds as doubles: allow the rounding of two conversions
        assert.is_true(corio.now() - v0 >= 3600 - 1e-6)
      end)
      assert.is_true(os.time() - t0 < 2)
    end)
end)

-- busted reverts no stub at the end of a test, and the runner used to
-- call corio.spawn, corio.current, ... through the module table: a test
-- that stubbed corio.spawn (to test code that spawns) and left the stub
-- made every later test fail with "attempt to index local 'watcher'".
describe("a stub of corio's functions left by a test", function()
  local real = {}

  it("stubs corio.spawn, current, shield, run and tasks, and leaves them", function()
    for _, name in ipairs({ "spawn", "current", "shield", "run", "tasks",
        "is_cancelled" }) do
      real[name] = corio[name]
      stub(corio, name)
    end
    corio.spawn(function() end)
    assert.stub(corio.spawn).was.called(1)
  end)

  it("does not break the runner for the next test", function()
    finally(function()
      for name, f in pairs(real) do corio[name] = f end
    end)
    assert.is_nil(corio.current())   -- still the stub
    assert.is_not_nil(real.current())
  end)

  it("and the next one has the real functions back", function()
    local t = corio.spawn(function() corio.sleep(0.001) return 1 end)
    assert.equal(1, t:join())
    assert.equal(1, #corio.tasks())
  end)
end)
