-- hunt_release_spec.lua: a hunt for what is not released on some path
-- (error, timeout, cancellation, garbage collection, the end of a run):
-- file descriptors, HTTP connections, wait-queue entries, the runtime's
-- anchor refs, memory. Loops of failing or cancelled operations must not
-- grow the registry, corio.tasks(), the open descriptors, or (after a
-- full collect) collectgarbage("count") beyond a small bound.
--
-- Defects found and fixed:
-- - a task's name (set by the user, or its default "task N (file:line)"
--   once made: by an error's traceback, a join of its Cancelled, tostring)
--   took a ref of the runtime's that nothing dropped: one ref slot and
--   one string per such task, until the runtime was freed
--   (runtime/task.c: names now live in a weak-keyed table);
-- - a task's results and error were kept in a weak-keyed table keyed by
--   its Task: LuaJIT's weak keys are no ephemerons, so results that
--   referred to the Task (corio.current() returned, an error table
--   holding it) kept the entry, the Task and its results for good
--   (runtime/task.c: they are kept in the Task userdata's environment);
-- - the spawn-site cache pinned the functions that called spawn, and so
--   what they captured (an unclosed file stayed open for good)
--   (runtime/task.c: the cache holds them weakly);
-- - tostring of a corio error with many errors (a scope where hundreds of
--   tasks failed) read the errors list from the wrong stack slot once the
--   message passed LUAL_BUFFERSIZE: a segfault (bindings/core.c);
-- - corio_free on a host's loop left the HTTP clients' handles there
--   (tests/c/test_hunt_release.c).
--
-- Checked and found sound (tests below): wait-queue entries of cancelled
-- and timed-out semaphore, lock, event and channel waits; deadlines left
-- by an error and cancelled sleeps; gather/map/first failing or
-- cancelled; to_thread calls cancelled while queued or running, and
-- failing; fs files, lines iterators, scandir and with_open on error,
-- cancellation and collection; HTTP requests cancelled while reading the
-- headers or the body, sending a body, or waiting for a pool slot,
-- streams and clients dropped without close; runs that end by an error,
-- a cancel or SIGINT with all of those open (stock luajit).
--
-- Note for measuring: LuaJIT's compiled traces keep the closures they were
-- recorded with (and so their upvalues: a stream, a file) alive until the
-- trace is flushed; the checks below flush traces before they count.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local fs = require("corio.fs")
local http = require("corio.http")

local catch = helpers.catch
local within = corio.timeout
-- the loops take seconds, more under the sanitizers
local long = function(fn) return require("corio.busted").timeout(240, fn) end

-- Fewer rounds under the sanitizers and a collector that runs all the
-- time (each round is ~10x slower there); the bounds below are per round
-- count, so they hold for both.
local SLOW = os.getenv("CORIO_SANITIZE") ~= nil or os.getenv("CORIO_GC_STRESS") ~= nil
local N = SLOW and 1000 or 10000

-- Entries of the registry and of the tables it holds under integer keys
-- (the runtime's anchor, refs and results tables are such tables).
local function registry_size()
  local n = 0
  for k, v in pairs(debug.getregistry()) do
    n = n + 1
    if type(k) == "number" and type(v) == "table" then
      for _ in pairs(v) do n = n + 1 end
    end
  end
  return n
end

local function full_collect()
  jit.flush()
  collectgarbage()
  collectgarbage()
end

local function memory()
  full_collect()
  return collectgarbage("count")
end

-- Run fn(i) for i = 1..n after a warm-up; fail if the registry, the live
-- tasks or the memory (KiB, after a full collect) grew beyond the bounds.
-- The warm-up is long: the runtime's tables (weak ones included) grow to
-- hold what a collector cycle leaves, and keep that size.
local function no_growth(what, n, fn, mem_kb)
  for i = 1, math.max(50, n / 2) do fn(i) end
  full_collect()
  local r0, t0, m0 = registry_size(), #corio.tasks(), memory()
  for i = 1, n do fn(i) end
  full_collect()
  local r1, t1, m1 = registry_size(), #corio.tasks(), memory()
  assert(r1 - r0 <= 8, ("%s: the registry grew by %d entries over %d rounds"):format(what, r1 - r0, n))
  assert(t1 == t0, ("%s: %d tasks left over %d rounds"):format(what, t1 - t0, n))
  assert(m1 - m0 <= (mem_kb or 64),
    ("%s: memory grew by %.1f KiB over %d rounds"):format(what, m1 - m0, n))
end

-- Open descriptors, after a full collect (collected files close on the
-- thread pool: wait for them).
local function fds_back(fds, what)
  local n
  for _ = 1, 100 do
    full_collect()
    n = helpers.open_fds()
    if n == fds then return end
    corio.sleep(0.01)
  end
  error(("%s: %d file descriptors left open"):format(what, n - fds), 2)
end

describe("task names (defect: a ref per named task, never dropped)", function()
  it("tasks cancelled and joined do not grow the registry", long(function()
    no_growth("cancel+join", N, function()
      local t = corio.spawn(function() corio.sleep(10) end)
      corio.yield()
      t:cancel()
      local e = catch(t.join, t)
      assert(corio.is_cancelled(e))
    end)
  end))

  it("tasks named by the user, or whose error named them, do not grow it", long(function()
    no_growth("named", N, function(i)
      local t = corio.spawn(function() end)
      t.name = "worker " .. i
      assert(tostring(t):find("worker " .. i, 1, true))
      t:join()
    end)
    no_growth("failed", N, function()
      local e = catch(corio.scope, function(s)
        s:spawn(function() error("boom") end)
      end)
      assert(tostring(e):find("boom", 1, true))
    end)
  end))

  it("a name outlives the task for whoever holds the Task", long(function()
    local t = corio.spawn(function() corio.sleep(0) end)
    corio.yield()
    local name = t.name
    assert.matches("^task %d+ %(.*hunt_release_spec.lua:%d+%)$", name)
    t:join()
    full_collect()
    assert.equal(name, t.name)
    assert.equal("corio.Task(" .. name .. ", done)", tostring(t))
    local u = corio.spawn(function() end)
    u.name = "mine"
    u:join()
    full_collect()
    assert.equal("mine", u.name)
    u.name = "renamed after its end"
    assert.equal("renamed after its end", u.name)
  end))
end)

describe("task results and errors (defect: kept by a weak-keyed table)", function()
  it("tasks whose results or error refer to their own Task are collected (defect: kept for good)", long(function()
    local big = ("x"):rep(1000)
    no_growth("results holding their Task", SLOW and 300 or 2000, function(i)
      local t = corio.spawn(function() return corio.current(), { me = corio.current(), s = big .. i } end)
      local me, tab = t:join()
      assert(me == t and tab.me == t)
      local e = catch(corio.scope, function(s)
        t = s:spawn(function() error({ me = corio.current(), s = big .. i }) end)
      end)
      assert(e.value.me == t)
    end, 32)
    -- a task's results and error are still there for a late joiner
    local t = corio.spawn(function() return corio.current(), "second" end)
    t:join()
    full_collect()
    local me, second = t:join()
    assert(me == t and second == "second")
  end))
end)

describe("the spawn-site cache (defect: it pinned the functions that spawned)", function()
  it("lets the collector have a function that spawned, and what it captured", long(function()
    local fds = helpers.open_fds()
    local gone = setmetatable({}, { __mode = "k" })
    do
      local f = fs.open("/proc/self/status")   -- left for the collector to close
      local function handler()
        f:read("l")
        corio.spawn(function() end):join()
      end
      handler()
      gone[handler] = true
    end
    fds_back(fds, "a file captured by a function that spawned")
    assert.is_nil(next(gone), "the function that spawned is still alive")
  end))

  it("still names the spawn site, also for a new function at a collected one's address", long(function()
    for i = 1, 200 do
      -- a new closure each round: most land where a collected one was
      local f = load(("return function(corio) local t = corio.spawn(function() error('x', 0) end) return t end"),
        "=site" .. i)()
      local e = catch(corio.scope, function() f(corio) end)
      assert.matches("spawned at site" .. i .. ":1", e.traceback)
      if i % 10 == 0 then full_collect() end
    end
  end))
end)

describe("an error of many errors (defect: tostring crashed)", function()
  it("tostring lists them all, past LUAL_BUFFERSIZE", long(function()
    local e = catch(corio.scope, function(s)
      for i = 1, 300 do s:spawn(function() error(("failure %03d"):format(i), 0) end) end
    end)
    assert.equal(300, #e.errors)
    local text = tostring(e)   -- was a segfault
    assert.matches("^error: failure 001\n%(%+299 more errors:", text)
    assert.truthy(text:find("\n  failure 300)", 1, true))
    -- a long message and a long traceback too
    e = catch(corio.scope, function(s)
      for _ = 1, 3 do s:spawn(function() error(("x"):rep(20000)) end) end
    end)
    assert.truthy(#tostring(e) > 60000)
  end))
end)

describe("timers and wait-queue entries of cancelled or timed-out waits", function()
  it("leave no ghost waiter: the object serves the next one at once", long(function()
    local sem, lock, ev, ch, ch1 = corio.semaphore(0), corio.lock(), corio.event(), corio.channel(), corio.channel(1)
    ch1:send("full")
    local ntasks = #corio.tasks()
    local holder = corio.spawn(function()
      lock:acquire()
      pcall(corio.sleep, math.huge)
      lock:release()
    end)
    corio.yield()
    no_growth("timed-out waits", N, function()
      assert.is_false(corio.move_on_after(0, sem.acquire, sem))
      assert.is_false(corio.move_on_after(0, lock.acquire, lock))
      assert.is_false(corio.move_on_after(0, ev.wait, ev))
      assert.is_false(corio.move_on_after(0, ch.recv, ch))
      assert.is_false(corio.move_on_after(0, ch.send, ch, {}))
      assert.is_false(corio.move_on_after(0, ch1.send, ch1, "ghost"))
    end)
    -- a waiter cancelled by task:cancel(), not a deadline
    local waiters = {}
    for i = 1, 20 do
      waiters[i] = corio.spawn(function() sem:acquire() end)
    end
    corio.yield()
    for _, t in ipairs(waiters) do t:cancel() end
    for _, t in ipairs(waiters) do assert(corio.is_cancelled(catch(t.join, t))) end
    -- no ghost takes a permit, an item or a hand-off
    sem:release()
    assert.equal(1, sem.available)
    assert.is_false((ch.try_send(ch, "x")))        -- no receiver waits
    assert.is_false((ch.try_recv(ch)))             -- no sender waits
    local ok, v = ch1:try_recv()
    assert.is_true(ok)
    assert.equal("full", v)
    assert.is_false((ch1:try_recv()))              -- no "ghost" was queued
    holder:cancel()
    holder:join()
    assert.is_false(lock:locked())
    assert.is_true(corio.move_on_after(1, lock.acquire, lock) ~= false)
    lock:release()
    assert.equal(ntasks, #corio.tasks())
  end))

  it("scope deadlines left early by an error, and cancelled sleeps", long(function()
    no_growth("deadlines", N, function()
      catch(corio.timeout, 100, error, "left by an error")
      catch(corio.timeout, 0, corio.sleep, 100)
      corio.move_on_after(100, function() end)
      local t = corio.spawn(corio.sleep, 100)
      corio.yield()
      t:cancel()
      catch(t.join, t)
    end)
    -- none of those timers is still armed: an autojump would jump to it
    local t0 = corio.now()
    require("corio.testing").autojump(function() corio.sleep(1) end)
    assert.is_true(corio.now() - t0 < 50)
  end))

  it("gather, map and first that fail or are cancelled", long(function()
    no_growth("gather/map/first", SLOW and 300 or 3000, function()
      catch(corio.gather, { function() error("a") end, function() corio.sleep(1) end })
      catch(corio.map, { 1, 2, 3 }, function(x) if x == 2 then error("m") end corio.sleep(1) end)
      catch(corio.first, { function() error("f1") end, function() error("f2") end })
      corio.move_on_after(0, corio.gather, { function() corio.sleep(1) end })
    end)
  end))
end)

describe("to_thread workers and their queued jobs", function()
  it("cancelled or failing calls leave nothing behind", long(function()
    no_growth("to_thread", SLOW and 200 or 2000, function()
      corio.move_on_after(0, corio.to_thread, function() return 1 end)
      catch(corio.to_thread, function() error("in the worker") end)
      -- more calls than workers, cancelled while queued
      corio.move_on_after(0.0005, corio.gather, {
        function() return corio.to_thread(function() end) end,
        function() return corio.to_thread(function() end) end,
        function() return corio.to_thread(function() end) end,
        function() return corio.to_thread(function() end) end,
        function() return corio.to_thread(function() end) end,
      })
    end, 256)
    assert.equal(3, corio.to_thread(function(a, b) return a + b end, 1, 2))
  end))
end)

describe("corio.fs on error, timeout, cancellation and collection", function()
  local dir, remove_dir
  setup(function() dir, remove_dir = helpers.temp_dir("corio-hunt-release") end)
  teardown(function() if remove_dir then remove_dir() end end)

  it("releases every descriptor and keeps memory bounded", long(function()
    local big = dir .. "/big.txt"
    local f = io.open(big, "w")
    for i = 1, 20000 do f:write(("line %d %s\n"):format(i, ("x"):rep(50))) end
    f:close()
    local fds = helpers.open_fds()
    no_growth("fs", SLOW and 200 or 2000, function(i)
      local it = fs.lines(big)          -- left mid-way
      it(); it()
      local g = fs.open(big)
      for _ in g:lines() do break end   -- left mid-way, never closed
      catch(fs.open, dir .. "/missing")
      catch(fs.with_open, big, "r", function(h) h:read("l"); error("in fn") end)
      corio.move_on_after(0, fs.with_open, big, "r", function(h) h:read("l"); corio.sleep(1) end)
      corio.move_on_after(0, fs.open, big)
      local w = fs.open(dir .. "/w" .. (i % 4) .. ".txt", "w")   -- never closed
      w:write("unflushed")
      for _ in fs.scandir(dir) do break end
    end, 256)
    fds_back(fds, "fs")
    assert.equal("unflushed", fs.read_file(dir .. "/w1.txt"))
  end))
end)

describe("corio.http connections cancelled in each phase", function()
  local base, stop
  setup(function() base, stop = helpers.http_server() end)
  teardown(function() if stop then stop() end end)

  local function settled(c, what)
    for _ = 1, 100 do
      if c:stats().in_flight == 0 then break end
      corio.sleep(0.01)
    end
    local s = c:stats()
    assert(s.in_flight == 0, what .. ": requests still in flight")
    assert(s.idle <= s.opened, what .. ": idle above opened")
    return s
  end

  it("each phase: no request stays in flight, descriptors come back, the client works on", long(function()
    local fds = helpers.open_fds()
    local c = http.client({ base_url = base, limits = { max_connections = 2 } })
    helpers.http_still_works(c)
    -- reading the headers
    for _ = 1, 10 do assert.is_false(corio.move_on_after(0.01, c.get, c, "/slow-headers?d=0.3")) end
    settled(c, "headers")
    -- reading the body
    for _ = 1, 10 do assert.is_false(corio.move_on_after(0.05, c.get, c, "/slow-body?d=0.3")) end
    settled(c, "body")
    -- sending a body the server does not read
    local body = ("x"):rep(8 * 1024 * 1024)
    for _ = 1, 3 do
      assert.is_false(corio.move_on_after(0.05, c.post, c, "/no-read?d=0.3", { body = body }))
    end
    settled(c, "send")
    -- waiting for a slot of the pool
    corio.scope(function(s)
      for _ = 1, 2 do s:spawn(c.get, c, "/slow-headers?d=0.2") end
      corio.yield()
      for _ = 1, 10 do assert.is_false(corio.move_on_after(0.01, c.get, c, "/ok")) end
      assert.equal(2, c:stats().in_flight)
    end)
    settled(c, "pool")
    -- streams left without close, in each state
    for i = 1, 10 do
      local r = c:stream("GET", "/stream?n=50&size=10000")
      if i % 2 == 0 then r:iter_bytes()() end
    end
    full_collect()
    settled(c, "streams")
    helpers.http_still_works(c)
    local st = c:stats()
    assert(st.idle <= 2, "more idle connections than the pool holds")
    c:close()
    -- a client dropped without close, with an idle connection and a stream
    for _ = 1, 5 do
      local d = http.client({ base_url = base })
      d:get("/ok")
      local r = d:stream("GET", "/stream?n=50&size=10000")
      r:iter_bytes()()
    end
    fds_back(fds, "http")
  end))

  it("a loop of failing and cancelled requests keeps memory bounded", long(function()
    local fds = helpers.open_fds()
    local c = http.client({ base_url = base })
    local refused = http.client({ base_url = "http://127.0.0.1:1" })
    -- (a request to the test server takes ~40 ms: one in 20 rounds)
    no_growth("http", SLOW and 300 or 2000, function(i)
      if i % 20 == 0 then catch(function() c:get("/status/500"):raise_for_status() end) end
      corio.move_on_after(0, c.get, c, "/ok")
      catch(refused.get, refused, "/")
    end, 256)
    settled(c, "loop")
    assert.equal(0, refused:stats().in_flight)
    c:close()
    refused:close()
    fds_back(fds, "http loop")
  end))
end)

-- A script run by a stock luajit in a child process (its stdout and
-- stderr together, and its exit status).
local function run_luajit(script)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(script)
  f:close()
  local out, rc = corio.to_thread(function(cmd)
    local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
    local o = p:read("*a")
    p:close()
    return (o:gsub("rc=%d+\n?$", "")), tonumber(o:match("rc=(%d+)\n?$"))
  end, ("LUA_PATH=%q LUA_CPATH=%q %s %q"):format(
    os.getenv("CORIO_LUA_PATH") or "./lua/?.lua;./lua/?/init.lua;;",
    os.getenv("CORIO_LUA_CPATH") or "./build/lib/lua/5.1/?.so;;",
    os.getenv("LUAJIT") or "luajit", path))
  os.remove(path)
  return out, rc
end

describe("the end of corio.run", function()
  local base, stop
  setup(function() base, stop = helpers.http_server() end)
  teardown(function() if stop then stop() end end)

  it("ended by an error, a cancel or SIGINT, releases what its tasks held", long(function()
    local out, rc = within(60, run_luajit, ([[
      local corio = require "corio"
      local fs = require "corio.fs"
      local http = require "corio.http"
      local ffi = require "ffi"
      ffi.cdef "int kill(int, int); int getpid(void);"
      local function fds()
        jit.flush(); collectgarbage(); collectgarbage()
        local n = 0
        for _ in fs.scandir("/proc/self/fd") do n = n + 1 end
        return n
      end
      local function once(how)
        return pcall(corio.run, function()
          local c = http.client { base_url = %q }
          c:get("/ok")
          local r = c:stream("GET", "/stream?n=50&size=10000")
          r:iter_bytes()()
          local f = fs.open("/proc/self/status")
          f:read("l")
          local it = fs.lines("/proc/self/status")
          it()
          corio.spawn(corio.sleep, 100)
          corio.spawn(function() corio.semaphore(0):acquire() end)
          corio.spawn(function() c:get("/slow-headers?d=0.2") end)
          corio.spawn(corio.to_thread, function() end)
          corio.sleep(0.01)
          if how == "error" then error("ends by an error", 0) end
          if how == "cancel" then corio.current():cancel(); corio.yield() end
          if how == "sigint" then ffi.C.kill(ffi.C.getpid(), 2); corio.sleep(100) end
        end)
      end
      for _, how in ipairs { "error", "cancel", "sigint" } do
        once(how)
        local n0, m0 = fds(), collectgarbage("count")
        local ok, e
        for _ = 1, 5 do ok, e = once(how) end
        local n1, m1 = fds(), collectgarbage("count")
        io.write(how, " ", tostring(ok), " ", type(e) == "table" and e.kind or tostring(e),
          " fds ", n1 - n0, " mem ", m1 - m0 < 256 and "ok" or (m1 - m0), "\n")
      end
    ]]):format(base))
    assert.equal(0, rc, out)
    assert.equal("error false error fds 0 mem ok\n"
      .. "cancel false cancelled fds 0 mem ok\n"
      .. "sigint false interrupted fds 0 mem ok\n", out)
  end))
end)
