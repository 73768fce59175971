-- soak_spec.lua: leaks AddressSanitizer cannot see. Each case runs one
-- API pattern many times and checks, after a warm-up and after N more
-- rounds, that the Lua heap (after two full collections), the registry
-- (its entries and those of corio's tables in it), the open descriptors
-- and the process RSS did not grow in proportion to N. Growth figures go
-- to stderr with CORIO_SOAK_VERBOSE=1.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local fs = require("corio.fs")
local http = require("corio.http")

local verbose = os.getenv("CORIO_SOAK_VERBOSE")

local function heap()
  collectgarbage()
  collectgarbage()
  return collectgarbage("count") * 1024
end

-- entries of the registry, plus those of every table reachable from it
-- under a "corio..." key (and of their table values, one level down).
-- A freed reference (luaL_unref) stays as a number in the registry's
-- free list: only references in use count.
local function count(t)
  local n = 0
  for _ in next, t do n = n + 1 end
  return n
end
local function registry_size()
  local reg = debug.getregistry()
  local n = 0
  for k, v in next, reg do
    if not (type(k) == "number" and type(v) == "number") then n = n + 1 end
  end
  for k, v in pairs(reg) do
    if type(k) == "string" and k:find("^corio") and type(v) == "table" then
      n = n + count(v)
      for _, w in pairs(v) do
        if type(w) == "table" then n = n + count(w) end
      end
    end
  end
  return n
end

local fds = helpers.open_fds

local function rss()
  local f = io.open("/proc/self/statm")
  local _, res = f:read("*l"):match("^(%d+) (%d+)")
  f:close()
  return tonumber(res) * 4096
end

-- Under AddressSanitizer the RSS says nothing (its quarantine holds
-- freed memory): it is measured, not checked.
local sanitized = (function()
  local f = io.open("/proc/self/maps")
  local maps = f and f:read("*a") or ""
  if f then f:close() end
  return maps:find("libasan", 1, true) ~= nil
end)()

local function measure()
  -- collected files and clients close on the loop or the thread pool:
  -- wait (up to a second) for the descriptor count to settle
  local fd = fds()
  for _ = 1, 50 do
    collectgarbage()
    corio.sleep(0.01)
    local now = fds()
    if now == fd then break end
    fd = now
  end
  return { heap = heap(), reg = registry_size(), fd = fd, rss = rss() }
end

-- Run round() warm times, measure (a), run it n/2 more times, measure
-- (b), n/2 more, measure (c); assert the growth from a to c of the heap,
-- the registry and the descriptors, and from b to c of the RSS (the
-- allocator's arenas, the thread pool's among them, fill up over the
-- first thousands of rounds, then stay), stays within a small constant
-- (slack overrides the defaults).
local function soak(name, n, round, slack)
  slack = slack or {}
  local warm = math.max(20, math.floor(n / 5))
  local half = math.floor(n / 2)
  for i = 1, warm do round(i) end
  local a = measure()
  for i = 1, half do round(warm + i) end
  local b = measure()
  for i = half + 1, n do round(warm + i) end
  local c = measure()
  local d = { heap = c.heap - a.heap, reg = c.reg - a.reg, fd = c.fd - a.fd,
    rss = c.rss - b.rss }
  if verbose then
    io.stderr:write(("soak %-30s n=%5d heap %+7.1f B/round reg %+4d fd %+3d rss %+8.1f B/round\n")
      :format(name, n, d.heap / n, d.reg, d.fd, d.rss / (n - half)))
  end
  local max_heap = slack.heap or 64 * 1024
  local max_rss = slack.rss or 2 * 1024 * 1024
  assert(d.heap <= max_heap, ("%s: the Lua heap grew by %d bytes over %d rounds (%.1f a round)")
    :format(name, d.heap, n, d.heap / n))
  assert(d.reg <= (slack.reg or 2), ("%s: the registry grew by %d entries over %d rounds")
    :format(name, d.reg, n))
  assert(d.fd <= 0, ("%s: %d descriptors left open over %d rounds"):format(name, d.fd, n))
  assert(sanitized or d.rss <= max_rss, ("%s: RSS grew by %d bytes over %d rounds (%.1f a round)")
    :format(name, d.rss, n - half, d.rss / (n - half)))
  return d
end

describe("soak: tasks and scopes", function()
  it("spawn + join", function()
    soak("spawn+join", 3000, function(i)
      local t = corio.spawn(function(x) corio.yield(); return x end, i)
      assert(t:join() == i)
    end)
  end)

  it("spawn + cancel", function()
    soak("spawn+cancel", 3000, function()
      local t = corio.spawn(function() corio.sleep(10) end)
      corio.yield()
      t:cancel()
      pcall(t.join, t)
    end)
  end)

  it("named tasks and corio.tasks()", function()
    soak("task.name+tasks()", 2000, function(i)
      local t = corio.spawn(function() corio.sleep(10) end)
      t.name = "worker " .. i
      assert(#corio.tasks() >= 2)
      t:cancel()
      pcall(t.join, t)
    end)
  end)

  it("scopes with deadlines that fire and that do not", function()
    soak("scope deadlines", 1500, function(i)
      corio.move_on_after(0.0005, function() corio.sleep(1) end)
      corio.move_on_after(10, function() corio.yield() end)
      pcall(corio.timeout, 0.0005, corio.sleep, 1)
      corio.timeout(10, corio.yield)
      corio.scope(function(s)
        s:spawn(corio.sleep, 10)
        s:spawn(corio.yield)
        corio.yield()
        s:cancel()
      end)
    end)
  end)

  it("shield and defer", function()
    soak("shield+defer", 400, function()
      corio.shield(corio.yield)
      corio.scope(function()
        corio.defer(function() end)
        corio.defer(function() corio.yield() end)
      end)
      local t = corio.spawn(function()
        corio.defer(function() end)
        corio.shield(function() corio.sleep(0.0002) end)
      end)
      corio.yield()
      t:cancel()
      pcall(t.join, t)
      corio.move_on_after(0.0001, function() corio.shield(corio.sleep, 0.0005) end)
    end)
  end)

  it("tasks that fail inside scopes", function()
    soak("failing tasks in scopes", 1500, function(i)
      local ok, err = pcall(corio.scope, function(s)
        s:spawn(function() corio.yield(); error("boom " .. i) end)
        s:spawn(corio.sleep, 10)
        corio.sleep(10)
      end)
      assert(not ok and err)
    end)
  end)

  it("gather, map and first with return_errors", function()
    soak("gather/map/first", 1000, function(i)
      local fns = {
        function() corio.yield(); return 1 end,
        function() error("no " .. i) end,
        function() corio.sleep(10) end,
      }
      local r, errs = corio.gather({ fns[1], fns[2] }, { return_errors = true })
      assert(r[1] == 1 and errs[2])
      r, errs = corio.map({ 1, 2, 3 }, function(x)
        if x == 2 then error("x") end
        return x
      end, { return_errors = true })
      assert(r[3] == 3 and errs[2])
      assert(corio.first({ fns[1], fns[3] }) == 1)
      pcall(corio.gather, fns)
    end)
  end)
end)

describe("soak: synchronisation and threads", function()
  it("channels dropped with values inside and with waiters cancelled", function()
    soak("channels", 2000, function(i)
      local ch = corio.channel(4)
      ch:send({ i }); ch:send("x")
      local ub = corio.channel()
      local s = corio.spawn(function() ub:send({ i }) end)
      local r = corio.spawn(function() corio.channel():recv() end)
      corio.yield()
      s:cancel(); r:cancel()
      pcall(s.join, s); pcall(r.join, r)
    end)
  end)

  it("semaphores, locks and events", function()
    soak("semaphore/lock/event", 2000, function()
      local sem, lock, ev = corio.semaphore(1), corio.lock(), corio.event()
      sem:with(corio.yield)
      lock:with(corio.yield)
      lock:acquire()
      local w = corio.spawn(function() lock:acquire() end)
      local e = corio.spawn(function() ev:wait() end)
      local s = corio.spawn(function() sem:acquire(); sem:acquire() end)
      corio.yield()
      w:cancel(); e:cancel(); s:cancel()
      lock:release()
      ev:set()
    end)
  end)

  it("to_thread", function()
    soak("to_thread", 500, function(i)
      assert(corio.to_thread(function(x) return x + 1 end, i) == i + 1)
      corio.move_on_after(0, corio.to_thread, function() end)
    end)
  end)
end)

describe("soak: corio.fs", function()
  local dir, rm, path
  setup(function()
    dir, rm = helpers.temp_dir("soak")
    path = dir .. "/f.txt"
    helpers.io_write(path, ("line\n"):rep(100))
  end)
  teardown(function() rm() end)

  it("open/read/close", function()
    soak("fs open/read/close", 800, function()
      local f = fs.open(path)
      assert(f:read("l") == "line")
      f:close()
      fs.with_open(path, "r", function(g) g:read("a") end)
    end, { rss = 4 * 1024 * 1024 })
  end)

  it("fs.lines loops left early", function()
    soak("fs.lines left early", 800, function()
      for l in fs.lines(path) do if l then break end end
      local f = fs.open(path)
      for _ in f:lines() do break end
      f:close()
    end)
  end)

  it("files dropped without close", function()
    soak("fs files dropped", 800, function()
      local f = fs.open(path)
      f:read("l")
      f = nil
    end)
  end)
end)

describe("soak: corio.http", function()
  local base, stop
  setup(function() base, stop = helpers.http_server() end)
  teardown(function() if stop then stop() end end)

  it("requests, streams closed early or dropped, cancelled requests", function()
    local c = http.client { base_url = base }
    soak("http requests/streams", 300, function()
      assert(c:get("/ok"):text() == "hello")
      local r = c:stream("GET", "/stream?n=50&size=1000")
      for _ in r:iter_bytes() do break end
      r:close()
      c:stream("GET", "/stream?n=4&size=10", nil, function(s) s:read() end)
      r = c:stream("GET", "/stream?n=50&size=1000")
      r = nil
      corio.move_on_after(0.001, c.get, c, "/never")
    end, { heap = 128 * 1024, rss = 4 * 1024 * 1024 })
    c:close()
  end)

  it("clients created and closed, and dropped without close", function()
    soak("http clients", 200, function()
      local c = http.client { base_url = base }
      c:get("/ok")
      c:close()
      c = http.client { base_url = base }
      c:get("/ok")
      c = nil
    end, { heap = 128 * 1024 })
  end)
end)

describe("soak: spawn sites", function()
  it("one chunk loaded many times under the same name", function()
    soak("load() same chunk name", 2000, function()
      local f = assert(load("local corio = ... local t = corio.spawn(corio.yield) return t", "=same"))
      f(corio):join()
    end)
  end)

  -- Chunk names are interned for the runtime's life, at most 1024 of
  -- them (docs/internals.md "Spawn sites"): past that, spawning from a
  -- chunk of a new name keeps nothing (was ~70 bytes a name, for good,
  -- and a scan of all the names at each such spawn).
  it("distinct chunk names", function()
    local code = "local corio = ... local t = corio.spawn(corio.yield) return t"
    soak("load() distinct chunk names", 20000, function(i)
      assert(load(code, "=chunk number " .. i))(corio):join()
    end, { rss = 256 * 1024 })
  end)

  it("a chunk loaded beyond the bound still spawns, its site unknown", function()
    local code = "local corio = ... local t = corio.spawn(corio.sleep, %s) return t"
    for i = 1, 1100 do assert(load(code:format(0), "=bound " .. i))(corio):join() end
    local t = assert(load(code:format(1), "=one more chunk"))(corio)
    local seen
    for _, e in ipairs(corio.tasks()) do
      if e.task == t then seen = e end
    end
    assert(seen, "the task is listed")
    assert.is_nil(seen.spawned_at)
    t:cancel()
  end)
end)
