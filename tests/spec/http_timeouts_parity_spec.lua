-- http_timeouts_parity_spec.lua: corio.http's timeouts and pool against
-- httpx's model (httpx.Timeout(connect, read, write, pool), Limits(
-- max_connections, max_keepalive_connections, keepalive_expiry)) and what
-- a careful httpx/aiohttp user expects: the option forms and how a
-- request's merge with the client's, which phase a timeout names, read as
-- the longest gap, total against the phases, a slow stream consumer,
-- keepalive_expiry, the queue of requests waiting for the pool, corio's
-- own deadlines around a request, the virtual clock, and bad values. The
-- cases already in http_spec.lua, hunt_http_spec.lua and
-- stream_parity_spec.lua are not repeated. Every request to the server
-- runs under a deadline (a hang fails the test).

local corio = require("corio")
local testing = require("corio.testing")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch
local http = require("corio.http")

local base, stop_server
setup(function() base, stop_server = helpers.http_server() end)
teardown(function() if stop_server then stop_server() end end)

local within = corio.timeout
local SECS = 10  -- generous: a loaded 2-core machine

local function timeout_err(fn, ...)
  local err = catch(within, SECS, fn, ...)
  assert.equal("timeout", err.kind, tostring(err))
  assert.is_not_nil(err.phase, "an HTTP timeout names its phase: " .. tostring(err))
  return err
end

local function has(s, part) assert.truthy(tostring(s):find(part, 1, true), tostring(s)) end

describe("timeout option forms", function()
  it("a number on the client sets connect, read, write and pool; nil keeps the defaults", function()
    local c = http.client { base_url = base, timeout = 0.3 }
    local t0 = corio.now()
    local err = timeout_err(c.get, c, "/slow-body?d=3")
    assert.equal("read", err.phase)
    has(err.message, "read timeout (0.3 s) expired")
    assert.is_true(corio.now() - t0 < 2)
    -- timeout = nil on the request keeps the client's (0.3)
    err = timeout_err(c.get, c, "/slow-headers?d=3", { timeout = nil })
    assert.equal("read", err.phase)
    helpers.http_still_works(c, SECS)
    c:close()
  end)

  it("a request's table overrides only the phases it names; false turns one off", function()
    local c = http.client { base_url = base, timeout = { read = 0.3 } }
    -- connect named, read kept from the client
    local err = timeout_err(c.get, c, "/slow-headers?d=3", { timeout = { connect = 2 } })
    assert.equal("read", err.phase)
    -- read off for this request (httpx's read=None): a 0.6 s wait passes
    local r = within(SECS, c.get, c, "/slow-headers?d=0.6", { timeout = { read = false } })
    assert.equal("late", r:text())
    -- and 0 means the same (libcurl's meaning)
    r = within(SECS, c.get, c, "/slow-headers?d=0.6", { timeout = { read = 0 } })
    assert.equal("late", r:text())
    -- the client's own is unchanged by those requests
    err = timeout_err(c.get, c, "/slow-headers?d=3")
    assert.equal("read", err.phase)
    c:close()
  end)

  it("a request's number keeps the client's total; false on the request turns total off too", function()
    local c = http.client { base_url = base, timeout = { read = 5, total = 0.4 } }
    local err = timeout_err(c.get, c, "/drip?n=40&d=0.05", { timeout = 5 })
    assert.equal("total", err.phase)
    has(err.message, "total timeout (0.4 s) expired")
    local r = within(SECS, c.get, c, "/drip?n=12&d=0.05", { timeout = false })
    assert.equal(string.rep(".", 12), r:text())
    r = within(SECS, c.get, c, "/drip?n=12&d=0.05", { timeout = { total = false } })
    assert.equal(string.rep(".", 12), r:text())
    -- 0 is false's equal (docs/http.md): every phase off, total included
    r = within(SECS, c.get, c, "/drip?n=12&d=0.05", { timeout = 0 })
    assert.equal(string.rep(".", 12), r:text())
    c:close()
  end)

  it("math.huge is no limit in practice", function()
    local c = http.client { base_url = base, timeout = math.huge }
    local r = within(SECS, c.get, c, "/slow-headers?d=0.3", { timeout = { total = math.huge } })
    assert.equal("late", r:text())
    c:close()
  end)
end)

describe("the phase a timeout names", function()
  -- a listening socket whose backlog is full and which never accepts:
  -- the kernel drops further SYNs, so a connect waits (a blackhole that
  -- needs no network)
  local function blackhole()
    local p = assert(io.popen("exec /usr/bin/python3 -c '"
      .. "import socket,sys,time,os\n"
      .. "s=socket.socket(); s.bind((\"127.0.0.1\",0)); s.listen(0)\n"
      .. "port=s.getsockname()[1]\n"
      .. "fill=[]\n"
      .. "for i in range(8):\n"
      .. "  c=socket.socket(); c.setblocking(False)\n"
      .. "  try: c.connect((\"127.0.0.1\",port))\n"
      .. "  except OSError: pass\n"
      .. "  fill.append(c)\n"
      .. "time.sleep(0.3)\n"
      .. "print(\"PORT %d %d\" % (port, os.getpid())); sys.stdout.flush()\n"
      .. "t=time.time()\n"
      .. "while time.time()-t<60 and os.getppid()!=1: time.sleep(0.2)\n'"))
    local line = p:read("*l")
    local port, pid = (line or ""):match("^PORT (%d+) (%d+)")
    assert(port, "the blackhole did not start: " .. tostring(line))
    return "http://127.0.0.1:" .. port, function() os.execute("kill " .. pid); p:close() end
  end

  it("connect: a host that never answers the SYN is phase connect, naming method and URL", function()
    local url, stop = blackhole()
    local c = http.client { timeout = { connect = 0.3, read = 5 } }
    local t0 = corio.now()
    local ok, err = pcall(within, SECS, c.get, c, url .. "/x")
    stop()
    assert.is_false(ok)
    assert.equal("timeout", err.kind, tostring(err))
    assert.equal("connect", err.phase)
    has(err.message, "GET " .. url .. "/x")
    has(err.message, "connect timeout (0.3 s) expired")
    assert.is_true(corio.now() - t0 < 3)
    c:close()
  end)

  it("read while the headers are slow and while the body stalls both name method and URL", function()
    local c = http.client { base_url = base, timeout = { read = 0.3 } }
    local err = timeout_err(c.get, c, "/slow-headers?d=3")
    assert.equal("read", err.phase)
    has(err.message, "GET " .. base .. "/slow-headers?d=3")
    assert.equal("GET", err.method)
    assert.equal(base .. "/slow-headers?d=3", err.url)
    err = timeout_err(c.request, c, "DELETE", "/slow-body?d=3")
    assert.equal("read", err.phase)
    has(err.message, "DELETE " .. base .. "/slow-body?d=3")
    c:close()
  end)

  it("write names method and URL", function()
    local c = http.client { base_url = base }
    local body = string.rep("u", 64 * 1024 * 1024)
    local err = timeout_err(c.put, c, "/no-read?d=3", { body = body, timeout = { write = 0.3 } })
    assert.equal("write", err.phase)
    has(err.message, "PUT " .. base .. "/no-read?d=3")
    c:close()
  end)

  it("pool names method and URL; the queued request never reached the server", function()
    local c = http.client { base_url = base, limits = { max_connections = 1 } }
    corio.scope(function(s)
      s:spawn(function() within(SECS, c.get, c, "/slow-headers?d=1") end)
      corio.sleep(0.1)
      local t0 = corio.now()
      local err = timeout_err(c.post, c, "/echo", { body = "x", timeout = { pool = 0.2 } })
      assert.equal("pool", err.phase)
      has(err.message, "POST " .. base .. "/echo")
      has(err.message, "pool timeout (0.2 s) expired")
      assert.is_true(corio.now() - t0 < 0.9)
    end)
    local s = c:stats()
    assert.equal(1, s.opened)
    assert.equal(0, s.in_flight)
    c:close()
  end)
end)

describe("where one phase ends and the next begins", function()
  it("a small upload sent whole, then no answer: phase read, not write", function()
    local c = http.client { base_url = base }
    local err = timeout_err(c.post, c, "/no-read?d=3",
      { body = string.rep("s", 1000), timeout = { write = 5, read = 0.3 } })
    assert.equal("read", err.phase)
    c:close()
  end)

  it("read counts from when the queued request got its connection, not from the call", function()
    local c = http.client { base_url = base, limits = { max_connections = 1 } }
    local r
    corio.scope(function(s)
      s:spawn(function() within(SECS, c.get, c, "/slow-headers?d=0.5") end)
      corio.sleep(0.05)
      -- 0.45 s in the pool, then 0.3 s for the head: 0.75 s from the
      -- call, each phase within its own 0.6 s
      r = within(SECS, c.get, c, "/slow-headers?d=0.3", { timeout = { pool = 2, read = 0.6 } })
    end)
    assert.equal("late", r:text())
    c:close()
  end)
end)

describe("total against the phases", function()
  it("whichever comes first names the phase", function()
    local c = http.client { base_url = base }
    local err = timeout_err(c.get, c, "/slow-body?d=3", { timeout = { read = 0.3, total = 5 } })
    assert.equal("read", err.phase)
    err = timeout_err(c.get, c, "/slow-body?d=3", { timeout = { read = 5, total = 0.3 } })
    assert.equal("total", err.phase)
    -- a slow-but-steady body: read never fires, total does
    err = timeout_err(c.get, c, "/drip?n=100&d=0.05", { timeout = { read = 0.3, total = 1 } })
    assert.equal("total", err.phase)
    c:close()
  end)
end)

describe("total and redirects", function()
  -- total bounds the call, as libcurl's CURLOPT_TIMEOUT does with its own
  -- redirects, not each hop (httpx has no total; its timeouts are per
  -- request sent)
  it("bounds the whole chain followed, naming the hop it expired on", function()
    local c = http.client { base_url = base, follow_redirects = true }
    local t0 = corio.now()
    local err = timeout_err(c.get, c, "/slow-redirect/3?d=0.3", { timeout = { read = 5, total = 0.7 } })
    assert.equal("total", err.phase)
    assert.is_true(corio.now() - t0 < 2, "took " .. (corio.now() - t0))
    has(err.message, "/slow-redirect/")
    has(err.message, "total timeout (0.7 s) expired")  -- the total set, not what was left
    assert.is_nil(err.url:find("/slow-redirect/3", 1, true))  -- a later hop
    -- within total, the chain is followed
    local r = within(SECS, c.get, c, "/slow-redirect/2?d=0.1", { timeout = { total = 2 } })
    assert.equal("landed", r:text())
    -- and a stream's chain as well
    err = timeout_err(c.stream, c, "GET", "/slow-redirect/3?d=0.3", { timeout = { total = 0.7 } })
    assert.equal("total", err.phase)
    c:close()
  end)
end)

describe("a stream whose consumer is slow", function()
  it("does not hit the read timeout: the transfer is paused, not the server slow", function()
    local c = http.client { base_url = base, timeout = { read = 0.2 } }
    local n = 0
    within(SECS, c.stream, c, "GET", "/stream?n=400&size=16384", function(r)
      local it = r:iter_bytes()
      n = #it()
      for _ = 1, 3 do corio.sleep(0.35) end  -- well past read, the transfer paused
      for chunk in it do n = n + #chunk end
    end)
    assert.equal(400 * 16384, n)
    helpers.http_still_works(c, SECS)
    c:close()
  end)
end)

describe("keepalive_expiry", function()
  it("a fraction of a second is honoured: an idle connection older than it is not reused", function()
    local c = http.client { base_url = base, limits = { keepalive_expiry = 0.5 } }
    within(SECS, c.get, c, "/ok")
    within(SECS, c.get, c, "/ok")  -- at once: reused
    assert.equal(1, c:stats().reused)
    corio.sleep(0.8)  -- older than 0.5 s, younger than 1 s
    within(SECS, c.get, c, "/ok")
    local s = c:stats()
    assert.equal(2, s.opened)
    assert.equal(1, s.reused)
    c:close()
  end)

  it("a tiny one (0.1 ms) is not taken for none: a connection idle 50 ms is not reused", function()
    local c = http.client { base_url = base, limits = { keepalive_expiry = 0.0001 } }
    within(SECS, c.get, c, "/ok")
    corio.sleep(0.05)
    within(SECS, c.get, c, "/ok")
    local s = c:stats()
    assert.equal(2, s.opened)
    assert.equal(0, s.reused)
    c:close()
  end)

  it("1.5 s: idle 1.8 s is not reused", function()
    local c = http.client { base_url = base, limits = { keepalive_expiry = 1.5 } }
    within(SECS, c.get, c, "/ok")
    corio.sleep(1.8)
    within(SECS, c.get, c, "/ok")
    local s = c:stats()
    assert.equal(2, s.opened)
    assert.equal(0, s.reused)
    c:close()
  end)
end)

describe("the queue of requests waiting for the pool", function()
  -- httpcore hands a freed connection to the longest waiter; libcurl
  -- (7.88) moves waiters back to the tail of its queue when another took
  -- the connection first, so the order is not theirs (docs/http.md,
  -- "Differences from httpx"): every waiter is served, on the one
  -- connection, none is left behind.
  it("serves every waiter on the one connection, though not first come, first served", function()
    local c = http.client { base_url = base, limits = { max_connections = 1 } }
    local order = {}
    corio.scope(function(s)
      s:spawn(function() within(SECS, c.get, c, "/slow-headers?d=0.2") end)
      corio.sleep(0.05)
      for i = 1, 5 do
        s:spawn(function()
          within(SECS, c.get, c, "/ok?i=" .. i)
          order[#order + 1] = i
        end)
        corio.sleep(0.01)
      end
    end)
    table.sort(order)
    assert.same({ 1, 2, 3, 4, 5 }, order)
    local st = c:stats()
    assert.equal(1, st.opened)
    assert.equal(5, st.reused)
    c:close()
  end)

  it("a waiter cancelled gives up its place; the others are served", function()
    local c = http.client { base_url = base, limits = { max_connections = 1 } }
    local order, tasks = {}, {}
    corio.scope(function(s)
      s:spawn(function() within(SECS, c.get, c, "/slow-headers?d=0.3") end)
      corio.sleep(0.05)
      for i = 1, 4 do
        tasks[i] = s:spawn(function()
          within(SECS, c.get, c, "/ok?i=" .. i)
          order[#order + 1] = i
        end)
        corio.sleep(0.01)
      end
      tasks[2]:cancel()
      tasks[3]:cancel()
    end)
    assert.same({ 1, 4 }, order)
    local st = c:stats()
    assert.equal(0, st.in_flight)
    assert.equal(1, st.opened)
    helpers.http_still_works(c, SECS)
    c:close()
  end)
end)

describe("corio's own deadlines around a request", function()
  it("corio.timeout shorter than the request's: corio's error, no phase", function()
    local c = http.client { base_url = base, timeout = 5 }
    local err = catch(corio.timeout, 0.2, c.get, c, "/slow-headers?d=3")
    assert.equal("timeout", err.kind)
    assert.is_nil(err.phase)
    assert.equal(0.2, err.seconds)
    assert.equal(0, c:stats().in_flight)
    helpers.http_still_works(c, SECS)
    c:close()
  end)

  it("the request's timeout shorter than corio.timeout: the request's error with its phase", function()
    local c = http.client { base_url = base, timeout = 0.2 }
    local err = catch(corio.timeout, 5, c.get, c, "/slow-headers?d=3")
    assert.equal("timeout", err.kind)
    assert.equal("read", err.phase)
    assert.is_nil(err.seconds)
    c:close()
  end)

  it("move_on_after shorter than the request's: no error, the transfer is gone", function()
    local c = http.client { base_url = base, timeout = 5 }
    local t0 = corio.now()
    assert.is_false(corio.move_on_after(0.2, c.get, c, "/slow-headers?d=3"))
    assert.is_true(corio.now() - t0 < 1)
    assert.equal(0, c:stats().in_flight)
    helpers.http_still_works(c, SECS)
    c:close()
  end)

  it("move_on_after longer: the request's timeout error goes through it", function()
    local c = http.client { base_url = base, timeout = 0.2 }
    local err = catch(corio.move_on_after, 5, c.get, c, "/slow-headers?d=3")
    assert.equal("timeout", err.kind)
    assert.equal("read", err.phase)
    c:close()
  end)
end)

describe("timeouts under corio.testing.autojump", function()
  it("run on real time: the virtual clock does not jump over a pending transfer", function()
    local c = http.client { base_url = base, timeout = { read = 0.3 } }
    local t0 = helpers.mono and helpers.mono() or os.time()
    local err = testing.autojump(function()
      return catch(within, SECS, c.get, c, "/slow-headers?d=3")
    end)
    assert.equal("timeout", err.kind)
    assert.equal("read", err.phase)
    -- and a slow-but-steady body passes under autojump
    local r = testing.autojump(function()
      return within(SECS, c.get, c, "/drip?n=10&d=0.05")
    end)
    assert.equal("..........", r:text())
    c:close()
  end)

  it("a pool wait is on real time too", function()
    local c = http.client { base_url = base, limits = { max_connections = 1 } }
    local err
    testing.autojump(function()
      corio.scope(function(s)
        s:spawn(function() within(SECS, c.get, c, "/slow-headers?d=0.6") end)
        testing.sleep_real(0.1)
        err = catch(within, SECS, c.get, c, "/ok", { timeout = { pool = 0.2 } })
      end)
    end)
    assert.equal("timeout", err.kind)
    assert.equal("pool", err.phase)
    c:close()
  end)
end)

describe("bad timeout values", function()
  local function bad(fn, ...)
    local err = catch(fn, ...)
    assert.equal("invalid", err.kind, tostring(err))
    return err.message
  end

  it("on the client: kind invalid naming the option", function()
    has(bad(http.client, { timeout = -1 }), "bad argument #1 to 'client' (timeout: non-negative number expected, got -1)")
    has(bad(http.client, { timeout = 0 / 0 }), "timeout: non-negative number expected, got")
    has(bad(http.client, { timeout = "1" }), "timeout: number or table expected, got string")
    has(bad(http.client, { timeout = true }), "timeout: number or table expected, got boolean")
    has(bad(http.client, { timeout = { read = "1" } }), "timeout.read: non-negative number expected, got string")
    has(bad(http.client, { timeout = { read = -0.5 } }), "timeout.read: non-negative number expected, got -0.5")
    has(bad(http.client, { timeout = { total = 0 / 0 } }), "timeout.total: non-negative number expected")
    has(bad(http.client, { timeout = { reed = 1 } }), "timeout: unknown phase 'reed'")
    has(bad(http.client, { limits = { keepalive_expiry = -1 } }), "limits.keepalive_expiry")
    has(bad(http.client, { limits = { keepalive_expiry = 0 / 0 } }), "limits.keepalive_expiry")
  end)

  it("on a request: kind invalid naming the function, method and URL, nothing sent", function()
    local c = http.client { base_url = base }
    local m = bad(c.get, c, "/ok", { timeout = { pool = -1 } })
    has(m, "bad argument #2 to 'get' (timeout.pool: non-negative number expected, got -1)")
    m = bad(c.request, c, "POST", "/echo", { timeout = "5" })
    has(m, "bad argument #3 to 'request' (timeout: number or table expected, got string)")
    m = bad(c.stream, c, "GET", "/ok", { timeout = { connect = 0 / 0 } })
    has(m, "timeout.connect")
    assert.equal(0, c:stats().opened)
    c:close()
  end)
end)
