-- debug_parity_spec.lua: corio's debugging surface held against what
-- asyncio (all_tasks, Task.get_stack / print_stack, debug mode), trio (the
-- task tree) and Node (async stack traces) users rely on: corio.tasks()
-- for a task suspended in each kind of wait, task names (set at spawn and
-- later, odd content), parent links, the order of the list, tracebacks
-- through nested scopes / gather / map, errors in defer handlers. The CLI
-- side (deadlock report, uncaught errors, SIGUSR1) is tests/cli/debug_parity.sh.

local corio = require("corio")
local fs = require("corio.fs")
local http = require("corio.http")
local helpers = require("tests.spec.helpers")

local SRC = "debug_parity_spec.lua"

-- the line of the caller
local function here() return debug.getinfo(2, "l").currentline end

local function entry_named(name)
  for _, e in ipairs(corio.tasks()) do
    if e.name == name then return e end
  end
end

local function entries_by_task()
  local m = {}
  for i, e in ipairs(corio.tasks()) do m[e.task] = e; e.index = i end
  return m
end

-- assert that the task called name is listed as blocked in `waiting` at
-- line `line` of this file, a child of the caller
local function assert_blocked(name, waiting, line)
  local e = entry_named(name)
  assert.is_table(e, "corio.tasks() does not list " .. name)
  assert.equal("running", e.status, name)
  assert.equal(waiting, e.waiting, name)
  assert.equal(corio.current(), e.parent_task, name)
  assert.equal(corio.current().name, e.parent, name)
  assert.is_string(e.spawned_at, name)
  assert.truthy(e.spawned_at:find(SRC .. ":%d+$"), e.spawned_at)
  if line then
    assert.equal(SRC .. ":" .. line, e.where:match("[^/]*$"), name)
  end
  assert.equal(e.task.id, e.id)
  assert.equal(e.task.name, e.name)
end

describe("corio.tasks() for a task suspended in each kind of wait", function()
  it("names what it waits in and the line it waits at", function()
    local lines = {}
    local ch = corio.channel()
    local full = corio.channel(0)
    local sem = corio.semaphore(0)
    local lock = corio.lock()
    local ev = corio.event()
    corio.scope(function(s)
      s:spawn(function() lines.sleeper = here(); corio.sleep(10) end).name = "sleeper"
      s:spawn(function() lines.recver = here(); ch:recv() end).name = "recver"
      s:spawn(function() lines.sender = here(); full:send(1) end).name = "sender"
      s:spawn(function() lines.sem = here(); sem:acquire() end).name = "sem"
      s:spawn(function() lock:acquire(); corio.sleep(10) end).name = "holder"
      s:spawn(function()
        corio.sleep(0); lines.locker = here(); lock:acquire()
      end).name = "locker"
      s:spawn(function() lines.ev = here(); ev:wait() end).name = "ev"
      local j = s:spawn(function() corio.sleep(10) end)
      j.name = "joined"
      s:spawn(function() lines.joiner = here(); j:join() end).name = "joiner"
      s:spawn(function()
        lines.scoper = here(); corio.scope(function(s2) s2:spawn(corio.sleep, 10) end)
      end).name = "scoper"
      s:spawn(function()
        -- a generator the task drives: where is the line inside it
        local g = coroutine.wrap(function()
          coroutine.yield(1)
          lines.gen = here(); corio.sleep(10)
        end)
        g(); g()
      end).name = "gen"
      s:spawn(function() corio.spawn(corio.sleep, 10) end).name = "ender"
      corio.sleep(0.05)
      assert_blocked("sleeper", "sleep", lines.sleeper)
      assert_blocked("recver", "channel recv", lines.recver)
      assert_blocked("sender", "channel send", lines.sender)
      assert_blocked("sem", "semaphore acquire", lines.sem)
      assert_blocked("locker", "lock acquire", lines.locker)
      assert_blocked("ev", "event wait", lines.ev)
      assert_blocked("joiner", "join", lines.joiner)
      assert_blocked("scoper", "scope (waiting for its tasks)", lines.scoper)
      assert_blocked("gen", "sleep", lines.gen)
      -- a task whose body returned waits for its tasks; it has no line
      local ender = entry_named("ender")
      assert.equal("its tasks", ender.waiting)
      assert.is_nil(ender.where)
      -- the caller: running, no waiting, no where
      local me = entry_named(corio.current().name)
      assert.equal("running", me.status)
      assert.is_nil(me.waiting)
      assert.is_nil(me.where)
      s:cancel()
    end)
  end)

  it("to_thread, a file open and an HTTP request", function()
    local base, stop = helpers.http_server()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir .. " && mkfifo " .. dir .. "/fifo") == 0)
    local fifo = dir .. "/fifo"
    local client = http.client{base_url = base}
    local lines = {}
    local ok, err = pcall(corio.scope, function(s)
      local gate = corio.event()
      s:spawn(function()
        lines.thread = here(); corio.to_thread(function()
          local t0 = os.time()
          while os.time() - t0 < 1 do end   -- busy a second, no Lua state shared
        end)
      end).name = "threaded"
      s:spawn(function()
        -- opening a FIFO for reading waits for a writer, in libuv's pool
        lines.fs = here(); local f = fs.open(fifo, "r")
        f:close()
      end).name = "opener"
      s:spawn(function()
        lines.http = here(); client:get("/slow-headers?d=3")
      end).name = "requester"
      -- until the three are blocked (a loaded machine: up to 10 s)
      local function blocked(name)
        local e = entry_named(name)
        return e and e.waiting ~= nil
      end
      for _ = 1, 200 do
        if blocked("threaded") and blocked("opener") and blocked("requester") then
          break
        end
        corio.sleep(0.05)
      end
      local aok, aerr = pcall(function()
        assert_blocked("threaded", "to_thread", lines.thread)
        assert_blocked("opener", "fs.open", lines.fs)
        assert_blocked("requester", "http request", lines.http)
      end)
      -- let the open end whatever the assertions said (a file open cannot
      -- be cancelled while it runs in libuv's pool): a writer comes ("r+",
      -- O_RDWR, does not wait for a reader on Linux, should the open above
      -- have ended already)
      -- The writer stays open until the opener is through: its open may
      -- still wait in the pool's queue (not yet in open(2)) on a loaded
      -- machine, and would then find no writer and wait for ever.
      local opener = entry_named("opener")
      local w = fs.open(fifo, "r+")
      if opener then pcall(opener.task.join, opener.task) end
      w:close()
      entry_named("requester").task:cancel()
      gate:set()
      assert(aok, aerr)
    end)
    client:close()
    stop()
    os.remove(fifo)
    os.remove(dir)
    assert(ok, tostring(err))
  end)
end)

describe("corio.tasks(): order and parents", function()
  it("lists the root first, then the tree depth first in spawn order", function()
    corio.scope(function(s)
      local a = s:spawn(function()
        corio.spawn(corio.sleep, 10).name = "a1"
        corio.spawn(corio.sleep, 10).name = "a2"
        corio.sleep(10)
      end)
      a.name = "a"
      s:spawn(corio.sleep, 10).name = "b"
      corio.sleep(0.01)
      local names = {}
      for _, e in ipairs(corio.tasks()) do names[#names + 1] = e.name end
      -- the test body's own task, then its scope's tasks
      assert.same({corio.current().name, "a", "a1", "a2", "b"}, names)
      assert.is_nil(corio.tasks()[1].parent_task)
      assert.is_nil(corio.tasks()[1].parent)
      s:cancel()
    end)
  end)

  it("a parent whose body returned stays listed (its tasks still run)", function()
    -- the child waits for an event, not a short sleep: on a loaded box
    -- a 0.05 s sleep ended before the listing was taken
    local child
    local go = corio.event()
    local p = corio.spawn(function()
      child = corio.spawn(function() go:wait() end)
    end)
    p.name = "the parent"
    corio.sleep(0.01)
    local m = entries_by_task()
    assert.equal("running", p:status())
    assert.is_table(m[p])
    assert.equal("its tasks", m[p].waiting)
    assert.equal(p, m[child].parent_task)
    assert.equal("the parent", m[child].parent)
    assert.is_true(m[p].index < m[child].index)
    go:set()
    child:join()
    p:join()
    assert.equal("done", p:status())
    assert.is_nil(entries_by_task()[p])
  end)

  it("is a snapshot: a task that ends later stays in the array taken", function()
    local t = corio.spawn(function() end)
    local snap = corio.tasks()
    assert.equal(2, #snap)
    assert.equal("pending", snap[2].status)
    t:join()
    assert.equal(t, snap[2].task)
    assert.equal("pending", snap[2].status)
    assert.equal(1, #corio.tasks())
  end)
end)

describe("task names", function()
  it("default name: task N with where the function was defined", function()
    local line = here(); local t = corio.spawn(function() end)
    assert.equal("task " .. t.id .. " (" .. SRC .. ":" .. line .. ")",
                 t.name:gsub("^task (%d+) %(.*/", "task %1 ("))
    assert.equal(SRC .. ":" .. line, entry_named(t.name).spawned_at:match("[^/]*$"))
    t:join()
  end)

  it("a name set after the spawn shows in tasks(), tostring and join's cancel", function()
    local t = corio.spawn(corio.sleep, 10)
    t.name = "renamed"
    assert.equal("renamed", entry_named("renamed").name)
    assert.equal(t, entry_named("renamed").task)
    assert.equal("corio.Task(renamed, pending)", tostring(t))
    t:cancel()
    local ok, err = pcall(t.join, t)
    assert.is_false(ok)
    assert.equal("cancelled", err.kind)
    assert.truthy(tostring(err):find("renamed was cancelled", 1, true))
  end)

  it("a number given as a name is kept as a string (the name is a string)", function()
    local t = corio.spawn(function() end)
    t.name = 42
    assert.equal("string", type(t.name))
    assert.equal("42", t.name)
    assert.equal("string", type(entry_named("42").name))
    t:join()
  end)

  it("a name of another type raises, naming the field and the type", function()
    local t = corio.spawn(function() end)
    for _, v in ipairs({{}, true, print, io.stdout,
                        setmetatable({}, {__tostring = function() return "x" end})}) do
      local ok, err = pcall(function() t.name = v end)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("task: field 'name' must be a string, got "
                                       .. type(v), 1, true), tostring(err))
    end
    local ok, err = pcall(function() t.name = nil end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("got nil", 1, true))
    t:join()
  end)

  it("a very long name is kept whole by task.name and tasks()", function()
    local t = corio.spawn(function() end)
    local long = string.rep("n", 100000)
    t.name = long
    assert.equal(long, t.name)
    assert.equal(long, corio.tasks()[2].name)
    -- tostring (a one-line report) cuts it
    local s = tostring(t)
    assert.truthy(#s < 300, #s)
    assert.truthy(s:find("^corio%.Task%(n+%.%.%., pending%)$"), s)
    t:join()
  end)

  it("newlines and NULs in a name: kept in task.name, escaped by tostring", function()
    local t = corio.spawn(function() end)
    t.name = "a\nb\0c"
    assert.equal("a\nb\0c", t.name)
    assert.equal("a\nb\0c", corio.tasks()[2].name)
    assert.equal("corio.Task(a\\nb\\0c, pending)", tostring(t))
    t:join()
    t.name = "after the end"
    assert.equal("after the end", t.name)
    assert.equal("corio.Task(after the end, done)", tostring(t))
  end)
end)

describe("tracebacks", function()
  it("through a scope, map and gather: the user's functions and the spawn site", function()
    local leaf_line, gather_line
    local function leaf() leaf_line = here(); error("boom in leaf") end
    local function mid()
      gather_line = here(); corio.gather({function() corio.sleep(0.01); leaf() end})
    end
    local ok, err = pcall(corio.scope, function(s)
      s:spawn(function()
        corio.map({1, 2, 3}, function(x) if x == 2 then mid() end return x end)
      end)
    end)
    assert.is_false(ok)
    assert.equal("error", err.kind)
    assert.truthy(err.message:find("boom in leaf", 1, true))
    local tb = err.traceback
    assert.truthy(tb:find(SRC .. ":" .. leaf_line .. ": in function 'leaf'", 1, true), tb)
    assert.truthy(tb:find("spawned at [^\n]*" .. SRC .. ":" .. gather_line .. "%)"), tb)
    -- tostring(err) is what the CLI prints: message then traceback
    assert.truthy(tostring(err):find("boom in leaf", 1, true))
    assert.truthy(tostring(err):find("in function 'leaf'", 1, true))
  end)

  it("an error in a defer handler is chained to the body's error", function()
    local ok, err = pcall(corio.scope, function(s)
      s:spawn(function()
        corio.defer(function() error("in the handler") end)
        error("in the body")
      end)
    end)
    assert.is_false(ok)
    assert.truthy(err.message:find("in the body", 1, true))
    assert.equal(2, #err.errors)
    assert.truthy(tostring(err.errors[2].message or err.errors[2]):find("in the handler", 1, true))
    assert.truthy(tostring(err):find("in the handler", 1, true))
  end)

  it("two handlers failing: both chained, newest first", function()
    local ok, err = pcall(corio.scope, function()
      corio.defer(function() error("first deferred") end)
      corio.defer(function() error("second deferred") end)
    end)
    assert.is_false(ok)
    local msgs = {}
    for _, e in ipairs(err.errors) do msgs[#msgs + 1] = tostring(e.message or e) end
    assert.equal(2, #msgs)
    assert.truthy(msgs[1]:find("second deferred", 1, true), msgs[1])
    assert.truthy(msgs[2]:find("first deferred", 1, true), msgs[2])
  end)

  it("an error nobody joins still reaches the scope (rule 9)", function()
    local ok, err = pcall(corio.scope, function(s)
      s:spawn(function() error({code = 7}) end)
      corio.sleep(1)
    end)
    assert.is_false(ok)
    assert.equal("error", err.kind)
    assert.same({code = 7}, err.value)
  end)
end)
