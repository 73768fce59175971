-- http2_spec.lua: corio.http over HTTP/2 against a private nginx (from
-- apt) that tests/http/nginx.sh starts on free 127.0.0.1 ports: h2c with
-- prior knowledge, and h2 over TLS with a self-signed certificate. Skipped,
-- with the reason, only when nginx or openssl is missing; CI installs both
-- (scripts/setup.sh).

local corio = require("corio")
local http = require("corio.http")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch

local src = os.getenv("CORIO_SOURCE_DIR") or "."
local dir, why_not, h2c, h2s, cert

local function within(secs, fn, ...) return corio.timeout(secs, fn, ...) end

-- The 256 KiB file nginx serves: byte i is i % 251.
local function pattern_ok(body)
  if #body ~= 262144 then return false, "length " .. #body end
  for i = 1, #body, 4099 do
    if body:byte(i) ~= (i - 1) % 251 then return false, "byte " .. i end
  end
  return true
end

setup(function()
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir) == 0)
  local p = assert(io.popen(("bash %s/tests/http/nginx.sh start %s 2>&1"):format(src, dir)))
  local out = p:read("*a")
  local ok, _, code = p:close()
  local a, b = out:match("PORTS (%d+) (%d+)")
  if a then
    h2c = "http://127.0.0.1:" .. a
    h2s = "https://127.0.0.1:" .. b
    cert = dir .. "/cert.pem"
  elseif out:find("not installed", 1, true) then
    why_not = out:gsub("%s+$", "")
  else
    error("tests/http/nginx.sh failed (" .. tostring(ok) .. " " .. tostring(code) .. "): " .. out)
  end
end)

teardown(function()
  if dir then
    os.execute(("bash %s/tests/http/nginx.sh stop %s; rm -rf %s"):format(src, dir, dir))
  end
end)

describe("corio.http HTTP/2", function()
  it("h2c with prior knowledge: http_version is HTTP/2", function()
    if why_not then return pending(why_not) end
    local c = http.client { base_url = h2c, http2 = true }
    local r = within(5, c.get, c, "/ok")
    assert.equal(200, r.status)
    assert.equal("HTTP/2", r.http_version)
    assert.equal("hello", r:text())
    assert.equal("5", r.headers["content-length"])
    r = within(5, c.get, c, "/256k.bin")
    assert.equal("HTTP/2", r.http_version)
    assert(pattern_ok(r:text()))
    c:close()
  end)

  it("h2 over TLS (ALPN), verified with the CA bundle", function()
    if why_not then return pending(why_not) end
    local c = http.client { base_url = h2s, http2 = true, verify = cert }
    local r = within(5, c.get, c, "/ok")
    assert.equal(200, r.status)
    assert.equal("HTTP/2", r.http_version)
    assert.equal("hello", r:text())
    assert.equal(h2s .. "/ok", r.url)
    c:close()
    -- without http2 the same server speaks HTTP/1.1
    c = http.client { base_url = h2s, verify = cert }
    r = within(5, c.get, c, "/ok")
    assert.equal("HTTP/1.1", r.http_version)
    c:close()
    -- and TLS verification still applies to h2
    c = http.client { base_url = h2s, http2 = true }
    assert.equal("tls", catch(within, 5, c.get, c, "/ok").kind)
    c:close()
  end)

  it("h2c: requests one after another reuse one connection", function()
    if why_not then return pending(why_not) end
    local c = http.client { base_url = h2c, http2 = true }
    for _ = 1, 10 do
      local r = within(5, c.get, c, "/256k.bin")
      assert.equal("HTTP/2", r.http_version)
      assert(pattern_ok(r:text()))
    end
    local s = c:stats()
    assert.equal(1, s.opened)
    assert.equal(9, s.reused)
    assert.equal(1, s.idle)
    c:close()
  end)

  -- With libcurl 7.88 on the multi_socket API, a burst like this on an
  -- h2c connection used to stall now and then until the read timeout (see
  -- kick_cb in runtime/http.c): each runs 5 times here.
  for _, which in ipairs { "h2c", "h2 over TLS" } do
    it(which .. ": concurrent requests share one multiplexed connection", function()
      if why_not then return pending(why_not) end
      local base = which == "h2c" and h2c or h2s
      for _ = 1, 5 do
        local c = http.client { base_url = base, http2 = true, verify = cert }
        local fns = {}
        for i = 1, 20 do
          fns[i] = function()
            local r = c:get("/256k.bin")
            assert.equal("HTTP/2", r.http_version)
            assert(pattern_ok(r:text()))
            return r.status
          end
        end
        local st = within(15, corio.gather, fns)
        for i = 1, 20 do assert.equal(200, st[i]) end
        local s = c:stats()
        assert.equal(1, s.opened)
        assert.equal(19, s.reused)
        assert.equal(1, s.idle)
        assert.equal(0, s.in_flight)
        c:close()
      end
    end)
  end

  it("stats().idle counts connections: streams multiplexed on one count once", function()
    if why_not then return pending(why_not) end
    local c = http.client { http2 = true, verify = cert }
    within(5, c.get, c, h2c .. "/ok")  -- one idle h2c connection
    assert.equal(1, c:stats().idle)
    -- three streams paused on a second (TLS) connection: in flight, and
    -- the h2c connection is still idle
    local rs = {}
    for i = 1, 3 do rs[i] = within(5, c.stream, c, "GET", h2s .. "/16m.bin") end
    corio.sleep(0.05)
    local s = c:stats()
    assert.equal(2, s.opened)
    assert.equal(3, s.in_flight)
    assert.equal(1, s.idle)
    for i = 1, 3 do assert.equal(16777216, #within(5, rs[i].read, rs[i])) end
    s = c:stats()
    assert.equal(2, s.idle)
    assert.equal(0, s.in_flight)
    c:close()
  end)

  it("streams over h2 with backpressure and reads the body intact", function()
    if why_not then return pending(why_not) end
    local c = http.client { base_url = h2c, http2 = true }
    local n, peak, paused = 0, 0, false
    within(20, c.stream, c, "GET", "/16m.bin", function(r)
      assert.equal("HTTP/2", r.http_version)
      for chunk in r:iter_bytes() do
        if n == 0 then corio.sleep(0.2) end  -- a slow consumer
        n = n + #chunk
        local held, p = r:_buffered()
        if held > peak then peak = held end
        paused = paused or p
        if n % (1024 * 1024) < #chunk then corio.sleep(0.01) end
      end
    end)
    assert.equal(16777216, n)
    assert.is_true(paused, "the transfer was never paused")
    -- bounded: over HTTP/2 the transfer pauses once one socket_action
    -- returned, which may have read up to 100 receive buffers of frames
    assert(peak <= 4 * 1024 * 1024, "buffered " .. peak)
    -- the connection went back to the pool
    local r = within(5, c.get, c, "/ok")
    assert.equal("hello", r:text())
    assert.equal(1, c:stats().opened)
    c:close()
  end)

  it("a stream closed early leaves the h2 client usable", function()
    if why_not then return pending(why_not) end
    local c = http.client { base_url = h2c, http2 = true }
    local r = within(5, c.stream, c, "GET", "/256k.bin")
    local first = within(5, r.iter_bytes(r))
    assert.truthy(#first > 0)
    r:close()
    assert.equal("closed", catch(r.read, r).kind)
    local r2 = within(5, c.get, c, "/256k.bin")
    assert(pattern_ok(r2:text()))
    c:close()
  end)
end)
