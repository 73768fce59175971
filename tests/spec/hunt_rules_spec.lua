-- hunt_rules_spec.lua: regressions found by an adversarial audit of SPEC
-- section 1's semantic rules 1-15, combining features the way a user's
-- program would. Each test failed before the fix committed with it, unless
-- it says it guards behaviour that was already right.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch

-- Run a script in a child process, under the corio program (prog "corio")
-- or a stock luajit (prog "luajit"); returns its stdout and stderr
-- together, and its exit status.
local function run_script(prog, script)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(script)
  f:close()
  local exe = prog == "corio" and (os.getenv("CORIO") or "build/corio")
    or (os.getenv("LUAJIT") or "luajit")
  local out, rc = corio.to_thread(function(env, cmd)
    local p = io.popen(env .. " " .. cmd .. " 2>&1; echo \"rc=$?\"")
    local o = p:read("*a")
    p:close()
    local code = tonumber(o:match("rc=(%d+)\n?$"))
    return (o:gsub("rc=%d+\n?$", "")), code
  end, ("LUA_PATH=%q LUA_CPATH=%q"):format(
      os.getenv("CORIO_LUA_PATH") or "./lua/?.lua;./lua/?/init.lua;;",
      os.getenv("CORIO_LUA_CPATH") or "./build/lib/lua/5.1/?.so;;"),
    ("%s %q"):format(exe, path))
  os.remove(path)
  return out, rc
end

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

describe("the deadlock error (rule 14)", function()
  it("lists a task whose body ended and that waits for its tasks", function()
    -- task A takes the lock and spawns B, which waits for it; A's body
    -- ends, so A waits for B: A must be named too, not only B
    local out, rc = run_script("corio", [[
local corio = require("corio")
local l = corio.lock()
local a = corio.spawn(function()
  l:acquire()
  corio.spawn(function() l:acquire() end)
end)
a:join()
]])
    assert.equal(1, rc)
    assert.matches("deadlock", out)
    assert.matches("waits for its tasks", out, 1, true)
    assert.matches("waits in lock acquire", out, 1, true)
    -- the task spawned at line 3 (A) is in the list
    assert.matches("waits for its tasks %(its body has returned%), spawned at %S+:3", out)
  end)

  it("prints the list of blocked tasks once, not twice", function()
    local out, rc = run_script("corio", [[
local corio = require("corio")
corio.spawn(function() corio.event():wait() end)
corio.event():wait()
]])
    assert.equal(1, rc)
    assert.equal(1, count(out, "every task is blocked"), out)
    assert.equal(1, count(out, "waits in event wait at %S+:2"), out)
  end)
end)

describe("a lock outside a loop (rule 11)", function()
  it("lock:acquire raises an error saying to use lock:with, and leaves the lock usable", function()
    local out, rc = run_script("luajit", [[
local corio = require("corio")
local l = corio.lock()
local ok, e = pcall(l.acquire, l)
print(ok, tostring(e):match("^[^\n]*"))
print(l:locked())
print(l:with(function() return "with works" end))
local ok2 = pcall(l.acquire, l)
print(ok2)
]])
    assert.equal(0, rc, out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.matches("^false\t.*lock:acquire%(%).*outside a loop.*lock:with", lines[1])
    assert.equal("false", lines[2])
    assert.equal("with works", lines[3])
    assert.equal("false", lines[4])
  end)

  it("semaphore acquire and release still work outside a loop (guard)", function()
    local out, rc = run_script("luajit", [[
local corio = require("corio")
local s = corio.semaphore(1)
s:acquire()
print(s.available)
s:release()
print(s.available)
]])
    assert.equal(0, rc, out)
    assert.equal("0\n1\n", out)
  end)
end)

describe("a suspension LuaJIT cannot make, from inside a scope (issue 3, bad input)", function()
  it("names the user's line, not a line of corio's own files", function()
    local err = catch(function()
      local t = { 3, 1, 2 }
      table.sort(t, function(a, b)
        corio.scope(function(s) s:spawn(function() corio.sleep(0.001) end) end)
        return a < b
      end)
    end)
    local first = tostring(err):match("^[^\n]*")
    assert.matches("cannot suspend the task here", first, 1, true)
    assert.matches("hunt_rules_spec.lua:%d+:", first)
    assert.not_matches("init%.lua", first)
  end)
end)

describe("the scheduling budget (rule 15)", function()
  -- a loop over batches that are often empty must not starve the task
  -- that fills them
  for _, case in ipairs {
    { "gather of an empty list", function() corio.gather({}) end },
    { "map of an empty list", function() corio.map({}, function() end) end },
    { "gather with return_errors of an empty list",
      function() corio.gather({}, { return_errors = true }) end },
  } do
    it(case[1] .. " lets the other tasks run", function()
      local other = 0
      local stop = false
      local t = corio.spawn(function()
        while not stop do other = other + 1; corio.yield() end
      end)
      local n = 0
      while other == 0 and n < 100000 do case[2](); n = n + 1 end
      stop = true
      t:join()
      assert.is_true(other > 0, "the other task never ran")
      assert.is_true(n <= 64, "ran " .. n .. " times first")
    end)
  end

  it("a deadline cuts a loop of empty gathers (it hung before)", function()
    local t0 = helpers.mono()
    local r = corio.move_on_after(0.01, function()
      while true do corio.gather({}) end
    end)
    assert.is_false(r)
    assert.is_true(helpers.mono() - t0 < 2)
  end)

  it("gather of an empty list in a cancelled scope still raises Cancelled (guard)", function()
    local r = corio.move_on_after(0, function()
      corio.gather({})
      error("not reached")
    end)
    assert.is_false(r)
  end)
end)

describe("corio.tasks() on a task whose body returned", function()
  it("says it waits for its tasks, as the deadlock error does", function()
    local ev = corio.event()
    local a = corio.spawn(function()
      corio.spawn(function() ev:wait() end)
    end)
    corio.sleep(0.01)
    local seen
    for _, info in ipairs(corio.tasks()) do
      if info.task == a then seen = info end
    end
    ev:set()
    a:join()
    assert.is_not_nil(seen)
    assert.equal("running", seen.status)
    assert.equal("its tasks", seen.waiting)
  end)
end)

describe("an error raised inside a coroutine.wrap generator (rule 9)", function()
  local function deep_fail() corio.sleep(0.001); error("gen failed") end
  local function gen_body() coroutine.yield(1); deep_fail() end
  local GEN_LINE = debug.getinfo(gen_body, "S").linedefined

  -- the failing task is run in a scope of its own, whose error is the
  -- task's error as the task boundary made it
  local function task_error(body)
    local ok, err = pcall(corio.scope, function(s) s:spawn(body) end)
    assert.is_false(ok)
    return err
  end

  it("keeps the generator's frames when it ends the task", function()
    local err = task_error(function()
      local gen = coroutine.wrap(gen_body)
      gen(); gen()
    end)
    assert.matches("gen failed", err.message)
    assert.matches("in function 'deep_fail'", err.traceback, 1, true)
    assert.matches("in function <[^>]*hunt_rules_spec.lua:" .. GEN_LINE .. ">", err.traceback)
    -- and where the task resumed the generator
    assert.matches("hunt_rules_spec.lua:%d+: in function <", err.traceback)
  end)

  it("keeps them through a scope body and nested generators", function()
    local err = task_error(function()
      corio.scope(function()
        local outer = coroutine.wrap(function()
          local gen = coroutine.wrap(gen_body)
          gen(); gen()
        end)
        outer()
      end)
    end)
    assert.matches("gen failed", err.message)
    assert.matches("in function 'deep_fail'", err.traceback, 1, true)
  end)
end)

describe("gather, map and first are checkpoints (rule 3, as api.md says)", function()
  -- guards behaviour that was right: each raises Cancelled on entry in a
  -- cancelled scope, before it runs any function
  for _, case in ipairs {
    { "gather", function(f) return corio.gather({ f }) end },
    { "map", function(f) return corio.map({ 1 }, f) end },
    { "first", function(f) return corio.first({ f }) end },
  } do
    it(case[1], function()
      local ran = false
      local r = corio.move_on_after(0, function()
        case[2](function() ran = true end)
        error("not reached")
      end)
      assert.is_false(r)
      assert.is_false(ran)
    end)
  end
end)
