-- http_pool_hunt_spec.lua: corio.http's connection pool when many
-- responses come back while the loop is busy (keep_trim in
-- runtime/http.c shuts the idle connections beyond max_keepalive),
-- against tests/http/server.py. The loop is held by a CPU loop while the
-- answers arrive, so that curl ends several transfers in one call.

local corio = require("corio")
local http = require("corio.http")
local helpers = require("tests.spec.helpers")

local base, stop_server

-- a request that must end within secs (a hang fails the test)
local within = corio.timeout

-- c:stats() has the counts in want (only those named are checked)
local function stats_are(c, want)
  local s = c:stats()
  for k, v in pairs(want) do assert.equal(v, s[k], "stats()." .. k) end
end

-- Runs fns together (corio.gather) while the loop is held past their
-- answers; returns their results.
local function busy_gather(fns)
  local res
  corio.scope(function(s)
    s:spawn(function() res = within(10, corio.gather, fns) end)
    corio.sleep(0.02)
    local t = os.clock() + 0.4
    while os.clock() < t do end  -- holds the loop past the answers
  end)
  return res
end

-- n functions that each GET path and return the status
local function gets(c, n, path)
  local fns = {}
  for i = 1, n do fns[i] = function() return c:get(path).status end end
  return fns
end

setup(function() base, stop_server = helpers.http_server() end)
teardown(function() if stop_server then stop_server() end end)

describe("corio.http pool, responses back while the loop is busy", function()
  it("requests queued on max_connections take the connections handed back, none shut under them",
    function()
      -- two answers arrive together while two requests wait for a
      -- connection: both connections go to those two, none is idle
      local c = http.client { base_url = base,
        limits = { max_connections = 2, max_keepalive = 1 } }
      local st = busy_gather(gets(c, 4, "/slow-headers?d=0.1"))
      for i = 1, 4 do assert.equal(200, st[i]) end
      stats_are(c, { opened = 2, reused = 2, idle = 1, in_flight = 0 })
      helpers.http_still_works(c, 2)
      c:close()
    end)

  it("max_keepalive holds when the requests waiting for those connections give up first",
    function()
      -- two answers arrive together while two requests wait for a
      -- connection; those two reach their pool timeout before curl hands
      -- them the connections: both connections are idle then
      local c = http.client { base_url = base,
        limits = { max_connections = 2, max_keepalive = 1 } }
      local errs = {}
      corio.scope(function(s)
        for i = 1, 2 do
          s:spawn(function()
            assert.equal(200, within(10, c.get, c, "/slow-headers?d=0.3").status)
          end)
        end
        corio.sleep(0.02)  -- the two hold both connections
        for i = 1, 2 do
          s:spawn(function()
            errs[i] = helpers.catch(within, 10, c.get, c, "/ok", { timeout = { pool = 0.5 } })
          end)
        end
        corio.sleep(0.02)  -- the two wait for a connection
        -- holds the loop past the answers and the pool timeouts
        local t = os.clock() + 0.9
        while os.clock() < t do end
      end)
      for i = 1, 2 do
        assert.equal("timeout", errs[i].kind, tostring(errs[i]))
        assert.equal("pool", errs[i].phase)
      end
      stats_are(c, { opened = 2, idle = 1, in_flight = 0 })
      helpers.http_still_works(c, 2)
      stats_are(c, { opened = 2, reused = 1, idle = 1, in_flight = 0 })
      c:close()
    end)

  it("a stream paused by its reader keeps its connection through a trim", function()
    local c = http.client { base_url = base, limits = { max_keepalive = 1 } }
    within(20, c.stream, c, "GET", "/stream?n=3000&size=1000", function(r)
      local it = r:iter_bytes()
      local n = #it()  -- then the stream waits, paused, while ...
      local st = busy_gather(gets(c, 4, "/slow-headers?d=0.1"))
      for i = 1, 4 do assert.equal(200, st[i]) end
      stats_are(c, { idle = 1, in_flight = 1 })  -- ... the others are trimmed
      for chunk in it do n = n + #chunk end
      assert.equal(3000 * 1000, n)
    end)
    stats_are(c, { in_flight = 0 })
    assert.is_true(c:stats().idle <= 1)
    helpers.http_still_works(c, 2)
    c:close()
  end)

  it("close() after a trim closes every socket, the shut ones too", function()
    local fds = helpers.open_fds()
    local c = http.client { base_url = base, limits = { max_keepalive = 1 } }
    local st = busy_gather(gets(c, 4, "/slow-headers?d=0.1"))
    for i = 1, 4 do assert.equal(200, st[i]) end
    stats_are(c, { opened = 4, idle = 1, in_flight = 0 })
    c:close()
    stats_are(c, { idle = 0, in_flight = 0 })
    helpers.assert_fds_back(fds)
  end)
end)

describe("corio.http pool without keep_trim, responses back while the loop is busy", function()
  it("max_keepalive = 0 keeps none", function()
    local c = http.client { base_url = base, limits = { max_keepalive = 0 } }
    for _ = 1, 2 do
      local st = busy_gather(gets(c, 4, "/slow-headers?d=0.1"))
      for i = 1, 4 do assert.equal(200, st[i]) end
    end
    stats_are(c, { opened = 8, reused = 0, idle = 0, in_flight = 0 })
    c:close()
  end)

  it("max_keepalive >= max_connections: every connection is kept and reused", function()
    local c = http.client { base_url = base,
      limits = { max_connections = 3, max_keepalive = 3 } }
    for _ = 1, 2 do
      local st = busy_gather(gets(c, 6, "/slow-headers?d=0.1"))
      for i = 1, 6 do assert.equal(200, st[i]) end
    end
    stats_are(c, { opened = 3, reused = 9, idle = 3, in_flight = 0 })
    c:close()
  end)
end)

describe("corio.http pool over TLS, responses back while the loop is busy", function()
  local src = os.getenv("CORIO_SOURCE_DIR") or "."
  local dir, remove_dir, why_not, tls_base, stop_tls, h2s, h2s_too

  setup(function()
    why_not = helpers.no_openssl()
    if why_not then return end
    dir, remove_dir = helpers.temp_dir("corio-pool-tls")
    -- nginx (h2 over TLS) when installed; it makes the certificate too
    local p = assert(io.popen(("bash %s/tests/http/nginx.sh start %s 2>&1"):format(src, dir)))
    local out = p:read("*a")
    p:close()
    local port = out:match("PORTS %d+ (%d+)")
    if port then
      -- one server, two origins: two connections
      h2s, h2s_too = "https://127.0.0.1:" .. port, "https://localhost:" .. port
    else
      helpers.self_signed(dir)
    end
    tls_base, stop_tls = helpers.http_server(("--tls %s/cert.pem %s/key.pem"):format(dir, dir), "https")
  end)

  teardown(function()
    if stop_tls then stop_tls() end
    if dir then os.execute(("bash %s/tests/http/nginx.sh stop %s"):format(src, dir)) end
    if remove_dir then remove_dir() end
  end)

  it("HTTP/1.1: connections shut as extra are replaced, never reused, no request fails", function()
    if why_not then return pending(why_not) end
    local c = http.client { base_url = tls_base, verify = false,
      limits = { max_keepalive = 1 } }
    for _ = 1, 3 do
      local st = busy_gather(gets(c, 4, "/slow-headers?d=0.1"))
      for i = 1, 4 do assert.equal(200, st[i]) end
      stats_are(c, { idle = 1, in_flight = 0 })
      for _ = 1, 3 do helpers.http_still_works(c, 5) end
      stats_are(c, { idle = 1, in_flight = 0 })
    end
    c:close()
  end)

  it("HTTP/2: connections of two origins shut as extra are replaced, no request fails", function()
    if why_not then return pending(why_not) end
    if not h2s then return pending("nginx is not installed") end
    local c = http.client { http2 = true, verify = false, limits = { max_keepalive = 1 } }
    for _ = 1, 3 do
      local fns = {}
      for i = 1, 6 do
        local origin = i % 2 == 0 and h2s or h2s_too
        fns[i] = function()
          local r = c:get(origin .. "/256k.bin")
          assert.equal("HTTP/2", r.http_version)
          assert.equal(262144, #r:text())
          return r.status
        end
      end
      local st = busy_gather(fns)
      for i = 1, 6 do assert.equal(200, st[i]) end
      assert.is_true(c:stats().idle <= 1)
      for i = 1, 4 do
        local origin = i % 2 == 0 and h2s or h2s_too
        assert.equal("hello", within(5, c.get, c, origin .. "/ok"):text())
      end
      stats_are(c, { idle = 1, in_flight = 0 })
    end
    c:close()
  end)

  it("limits larger than any pool work as no limit", function()
    -- 1e300 is an integer to Lua; bindings/http.c caps what it converts
    -- to a C long (the plain cast was undefined behaviour)
    local c = http.client { base_url = base,
      limits = { max_connections = 1e300, max_keepalive = 1e300 } }
    local st = within(5, corio.gather, gets(c, 4, "/ok"))
    for i = 1, 4 do assert.equal(200, st[i]) end
    stats_are(c, { in_flight = 0 })
    c:close()
  end)
end)
