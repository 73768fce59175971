-- http_spec.lua: SPEC §2 corio.http against tests/http/server.py, which
-- this spec starts on 127.0.0.1 (ephemeral port) and stops at the end.
-- Every fault case runs under a corio.timeout deadline, so a hang fails
-- the test instead of hanging CI, and checks that the client still works
-- afterwards.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch
local http = require("corio.http")

local src = os.getenv("CORIO_SOURCE_DIR") or "."
local base, stop_server

-- Run fn under a deadline: a hang fails the test with a timeout.
-- a request that must end within secs (a hang fails the test)
local within = corio.timeout

local function still_works(c) helpers.http_still_works(c, 2) end

local function url(path) return base .. path end

-- c:stats() has the counts in want (only those named are checked)
local function stats_are(c, want)
  local s = c:stats()
  for k, v in pairs(want) do assert.equal(v, s[k], "stats()." .. k) end
end

setup(function() base, stop_server = helpers.http_server() end)
teardown(function() if stop_server then stop_server() end end)

describe("corio.http responses", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  it("gets a response with status, body, headers, url, version, elapsed", function()
    local r = c:get("/ok")
    assert.equal(200, r.status)
    assert.equal("hello", r:text())
    assert.equal("5", r.headers["Content-Length"])
    assert.equal("5", r.headers["content-length"])
    assert.equal("text/plain", r.headers["CONTENT-TYPE"])
    assert.equal(url("/ok"), r.url)
    assert.equal("HTTP/1.1", r.http_version)
    assert.is_true(r.elapsed >= 0 and r.elapsed < 2)
    assert.equal("OK", r.reason_phrase)
  end)

  it("joins repeated headers with ', ' and keeps each in get_all", function()
    local r = c:get("/headers")
    assert.equal("a=1, b=2", r.headers["set-cookie"])
    assert.same({ "a=1", "b=2" }, r:get_all("Set-Cookie"))
    assert.equal("yes", r.headers["x-mixed-case"])
  end)

  it("decodes JSON, and names the URL when the body is not JSON", function()
    assert.same({ a = { 1, 2 }, b = "c" }, c:get("/json"):json())
    local err = catch(function() return c:get("/notjson"):json() end)
    assert.equal("protocol", err.kind)
    assert.truthy(tostring(err):find(url("/notjson"), 1, true))
  end)

  it("raise_for_status raises kind status with the response", function()
    local r = c:get("/status/404")
    assert.equal(404, r.status)
    local err = catch(r.raise_for_status, r)
    assert.equal("status", err.kind)
    assert.equal(r, err.response)
    assert.truthy(err.message:find("GET " .. url("/status/404"), 1, true))
    local ok = c:get("/ok")
    assert.equal(ok, ok:raise_for_status())
  end)

  it("sends json, form and raw bodies with every method", function()
    local e = c:post("/echo", { json = { x = 1 } }):json()
    assert.equal("POST", e.method)
    assert.equal('{"x":1}', e.body)
    assert.equal("application/json", e.headers["content-type"])
    e = c:put("/echo", { form = { a = "b c", d = { 1, 2 } } }):json()
    assert.equal("PUT", e.method)
    assert.equal("a=b%20c&d=1&d=2", e.body)
    assert.equal("application/x-www-form-urlencoded", e.headers["content-type"])
    e = c:patch("/echo", { body = "raw" }):json()
    assert.equal("PATCH", e.method)
    assert.equal("raw", e.body)
    assert.is_nil(e.headers["content-type"])
    assert.equal("DELETE", c:delete("/echo"):json().method)
    assert.equal("OPTIONS", c:request("options", "/echo"):json().method)
    local h = c:head("/ok")
    assert.equal(200, h.status)
    assert.equal("", h:text())
  end)

  it("encodes params after a query already in the URL", function()
    local e = c:get("/echo?z=0", { params = { a = "x y", b = { 1, 2 } } }):json()
    assert.equal("z=0&a=x%20y&b=1&b=2", e.query)
  end)

  it("joins relative URLs to base_url keeping its path", function()
    assert.equal("http://h/api/x", http._join("http://h/api", "/x"))
    assert.equal("http://h/api/x", http._join("http://h/api/", "x"))
    assert.equal("http://h/x?q=1", http._join("http://h/api", "../x?q=1"))
    local c2 = http.client { base_url = base .. "/nothing/.." }
    assert.equal(200, c2:get("ok").status)
    assert.equal(url("/ok"), c2:get("ok").url)
    c2.base_url = base .. "/status/"  -- a URL checked before is joined anew
    assert.equal(404, c2:get("404").status)
    assert.equal(404, c2:get("404").status)
    c2:close()
  end)

  it("merges default headers with the request's (request wins, any case)", function()
    local c2 = http.client { base_url = base, headers = { ["X-A"] = "1", ["X-B"] = "2" } }
    local e = c2:get("/echo", { headers = { ["x-b"] = "3", ["X-C"] = 4 } }):json()
    assert.equal("1", e.headers["x-a"])
    assert.equal("3", e.headers["x-b"])
    assert.equal("4", e.headers["x-c"])
    assert.truthy(e.headers["user-agent"]:match("^corio/"))
    c2:close()
  end)

  it("turns user:pass@ into Basic auth", function()
    local e = c:get(base:gsub("^http://", "http://u:p@") .. "/echo"):json()
    assert.equal("Basic dTpw", e.headers["authorization"])
  end)

  -- Was: the password was in every error message (and so in logs).
  it("hides a URL's password in error messages, as httpx's URL repr does", function()
    local function fails(kind, fn)
      local err = catch(corio.timeout, 3, fn)
      assert.equal(kind, err.kind, tostring(err))
      return err
    end
    local err = fails("connect", function()
      return c:get("http://bob:s3c:ret@127.0.0.1:1/x?y=1")
    end)
    assert.truthy(err.message:find("GET http://bob:[secure]@127.0.0.1:1/x?y=1", 1, true),
      err.message)
    assert.falsy(err.message:find("s3c", 1, true), err.message)
    assert.equal("http://bob:s3c:ret@127.0.0.1:1/x?y=1", err.url)
    local bad = catch(c.get, c, "http://bob:s3cret@127.0.0.1:1/", { headers = 5 })
    assert.equal("invalid", bad.kind)
    assert.falsy(bad.message:find("s3cret", 1, true), bad.message)
    -- a user without a password, and an @ in the path, are shown as given
    err = fails("connect", function() return c:get("http://bob@127.0.0.1:1/a@b") end)
    assert.truthy(err.message:find("GET http://bob@127.0.0.1:1/a@b", 1, true), err.message)
  end)

  it("module-level functions use a shared pooled client", function()
    assert.equal(200, http.get(url("/ok")).status)
    assert.equal("POST", http.post(url("/echo"), { body = "x" }):json().method)
  end)

  it("reuses connections and shows it in stats()", function()
    for _ = 1, 5 do c:get("/ok") end
    stats_are(c, { opened = 1, reused = 4, idle = 1, in_flight = 0 })
  end)
end)

describe("corio.http content encoding", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  local function numbered(n)
    local t = {}
    for i = 0, n - 1 do t[#t + 1] = i .. "\n" end
    return table.concat(t)
  end

  it("asks for gzip and hands over the body decoded, as httpx does", function()
    local r = c:get("/gzip", { params = { n = 500 } })
    assert.equal(200, r.status)
    assert.equal("gzip", r.headers["content-encoding"])
    local want = numbered(500)
    assert.equal(tostring(#want), r.headers["x-plain-length"])
    assert.is_true(tonumber(r.headers["content-length"]) < #want)
    assert.equal(want, r:text())
    local e = c:get("/echo"):json()
    assert.matches("gzip", e.headers["accept-encoding"], 1, true)
  end)

  it("decodes a large body streamed in bursts, whole and in order", function()
    local n = 300000
    local got = {}
    c:stream("GET", "/gzip", { params = { n = n } }, function(r)
      assert.equal("gzip", r.headers["content-encoding"])
      local k = 0
      for chunk in r:iter_bytes() do
        got[#got + 1] = chunk
        k = k + 1
        if k % 7 == 0 then corio.sleep(0.001) end  -- a slow reader pauses it
      end
    end)
    assert.equal(numbered(n), table.concat(got))
  end)

  it("a request's own Accept-Encoding replaces curl's; an encoded reply is still decoded", function()
    local e = c:get("/echo", { headers = { ["Accept-Encoding"] = "identity" } }):json()
    assert.equal("identity", e.headers["accept-encoding"])
    local r = c:get("/gzip", { params = { n = 20, force = 1 },
                               headers = { ["Accept-Encoding"] = "identity" } })
    assert.equal(numbered(20), r:text())
  end)

  it("decompress = false sends no Accept-Encoding and hands over the raw bytes", function()
    local raw = http.client { base_url = base, decompress = false }
    local e = raw:get("/echo"):json()
    assert.is_nil(e.headers["accept-encoding"])
    local r = raw:get("/gzip", { params = { n = 50, force = 1 } })
    assert.equal("gzip", r.headers["content-encoding"])
    local body = r:text()
    assert.equal(tonumber(r.headers["content-length"]), #body)
    assert.equal("\31\139", body:sub(1, 2))  -- the gzip magic
    raw:close()
    local err = catch(function() http.client { decompress = "yes" } end)
    assert.equal("invalid", err.kind)
    assert.matches("decompress", tostring(err), 1, true)
  end)

  it("a corrupt encoded body fails with kind protocol naming the URL; the client goes on", function()
    local err = catch(function()
      return within(5, c.get, c, "/gzip", { params = { n = 2000, bad = 1 } })
    end)
    assert.equal("protocol", err.kind)
    assert.matches("/gzip", tostring(err), 1, true)
    still_works(c)
  end)
end)

describe("corio.http methods called on something else", function()
  it("say which method and what it wants, kind invalid", function()
    local c = http.client { base_url = base }
    local r = within(2, c.get, c, "/ok")
    local cases = {
      { c, { "get", "post", "put", "patch", "delete", "head", "request",
        "stream", "stats", "close" }, "corio.http client" },
      { r, { "text", "json", "raise_for_status", "iter_bytes", "iter_lines",
        "read", "close", "get_all", "is_success" }, "corio.http response" },
    }
    for _, case in ipairs(cases) do
      for _, m in ipairs(case[2]) do
        for _, bad in ipairs { 5, "x", {}, false } do
          local err = catch(case[1][m], bad, "/ok")
          assert.equal("invalid", err.kind, tostring(err))
          assert.truthy(err.message:find("bad self to '" .. m .. "'", 1, true), err.message)
          assert.truthy(err.message:find(case[3] .. " expected", 1, true), err.message)
        end
      end
    end
    assert.equal("hello", r:text())
    still_works(c)
    c:close()
  end)
end)

describe("corio.http pool limits", function()
  -- n requests at once to a route that answers after d seconds, so each
  -- holds its own HTTP/1.1 connection
  local function burst(c, n, d)
    local fns = {}
    for i = 1, n do
      fns[i] = function() return c:get("/slow-headers?d=" .. d).status end
    end
    return within(5, corio.gather, fns)
  end

  it("max_keepalive closes the connections beyond it once they are idle", function()
    local c = http.client { base_url = base, limits = { max_keepalive = 2 } }
    burst(c, 4, 0.5)  -- long enough that all four are in flight at once
    local s = c:stats()
    assert.equal(4, s.opened)
    assert.equal(2, s.idle)
    assert.equal(0, s.in_flight)
    burst(c, 4, 0.5)  -- two reused, two new, and again two kept
    s = c:stats()
    assert.equal(6, s.opened)
    assert.equal(2, s.reused)
    assert.equal(2, s.idle)
    c:close()
  end)

  it("max_keepalive holds when the responses all come back while the loop is busy",
    function()
      -- the loop blocked while four answers arrived: curl ends the four
      -- transfers in one call, each against the bound set for all of
      -- them in flight (stats().idle was 4)
      local c = http.client { base_url = base, limits = { max_keepalive = 2 } }
      local function busy_burst()
        local fns = {}
        for i = 1, 4 do
          fns[i] = function() return c:get("/slow-headers?d=0.1").status end
        end
        corio.scope(function(s)
          s:spawn(function() within(5, corio.gather, fns) end)
          corio.sleep(0.02)
          local t = os.clock() + 0.4
          while os.clock() < t do end  -- holds the loop past the answers
        end)
      end
      busy_burst()
      stats_are(c, { opened = 4, idle = 2, in_flight = 0 })
      -- the two kept are reused; the two shut are found dead, not reused
      busy_burst()
      stats_are(c, { opened = 6, reused = 2, idle = 2, in_flight = 0 })
      still_works(c)
      c:close()
    end)

  it("max_keepalive = 0 keeps no connection", function()
    local c = http.client { base_url = base, limits = { max_keepalive = 0 } }
    for _ = 1, 3 do assert.equal(200, within(2, c.get, c, "/ok").status) end
    stats_are(c, { opened = 3, reused = 0, idle = 0 })
    c:close()
  end)

  it("max_connections queues requests on the connections it allows", function()
    local c = http.client { base_url = base, limits = { max_connections = 2 } }
    local t0 = corio.now()
    local st = burst(c, 4, 0.2)
    for i = 1, 4 do assert.equal(200, st[i]) end
    assert.is_true(corio.now() - t0 >= 0.35, "4 requests on 2 connections take 2 rounds")
    stats_are(c, { opened = 2, reused = 2, idle = 2 })
    c:close()
  end)

  it("a request cancelled while it waited for a connection leaves a handle that streams",
    function()
      -- libcurl 7.88 keeps the receive buffer of a transfer removed while it
      -- waited in the pool, and then refuses the stream's buffer size on
      -- that handle ("A libcurl function was given a bad argument")
      local c = http.client { base_url = base, limits = { max_connections = 1 } }
      corio.scope(function(s)
        s:spawn(function() within(5, c.get, c, "/slow-headers?d=0.3") end)
        s:spawn(function()
          corio.sleep(0.05)
          -- waits for the one connection, and is cancelled while it waits
          assert.is_false(corio.move_on_after(0.05, c.get, c, "/ok"))
        end)
      end)
      for i = 1, 2 do   -- the cancelled request's handle, then the other's
        local n = 0
        within(5, c.stream, c, "GET", "/stream?n=3&size=100&i=" .. i, function(r)
          for chunk in r:iter_bytes() do n = n + #chunk end
        end)
        assert.equal(300, n)
      end
      still_works(c)
      c:close()
    end)

  it("keepalive_expiry: an idle connection older than it is not reused", function()
    local c = http.client { base_url = base, limits = { keepalive_expiry = 1 } }
    within(2, c.get, c, "/ok")
    within(2, c.get, c, "/ok")  -- at once: reused
    assert.equal(1, c:stats().reused)
    assert.equal(1, c:stats().idle)
    corio.sleep(1.3)
    within(2, c.get, c, "/ok")  -- expired: closed, and a new one opened
    stats_are(c, { opened = 2, reused = 1, idle = 1 })
    c:close()
  end)

  it("keepalive_expiry = 0 keeps no connection", function()
    local c = http.client { base_url = base, limits = { keepalive_expiry = 0 } }
    within(2, c.get, c, "/ok")
    within(2, c.get, c, "/ok")
    stats_are(c, { opened = 2, reused = 0, idle = 0 })
    c:close()
  end)

  it("a kept connection the server closes is dropped quietly and replaced", function()
    -- curl stops watching a connection between requests; corio keeps its
    -- poll handle: the server's FIN must not make the loop spin
    local c = http.client { base_url = base }
    assert.equal(200, within(2, c.get, c, "/ok-then-close").status)
    corio.sleep(0.1)  -- the FIN arrives
    local t0 = os.clock()
    corio.sleep(0.3)
    local cpu = os.clock() - t0
    assert.is_true(cpu < 0.15, ("the idle loop used %.3f s of CPU"):format(cpu))
    for _ = 1, 3 do still_works(c) end
    stats_are(c, { opened = 2, reused = 2, idle = 1 })
    c:close()
  end)

  it("stats().idle goes down while a request holds the connection", function()
    -- one idle connection, taken by a request waiting for its answer
    local c = http.client { base_url = base }
    within(2, c.get, c, "/ok")
    assert.equal(1, c:stats().idle)
    local task = corio.spawn(function() return c:get("/slow-headers?d=0.3") end)
    corio.sleep(0.1)
    local s = c:stats()
    assert.equal(1, s.in_flight)
    assert.equal(1, s.reused)
    assert.equal(0, s.idle)
    assert.equal(200, task:join().status)
    s = c:stats()
    assert.equal(1, s.idle)
    assert.equal(0, s.in_flight)
    c:close()
  end)

  it("limits are checked: kind invalid naming the option", function()
    for _, bad in ipairs {
      { max_connections = 0 }, { max_connections = "x" }, { max_keepalive = -1 },
      { max_keepalive = 1.5 }, { keepalive_expiry = -1 }, { keepalive_expiry = "5" },
    } do
      local k = next(bad)
      local err = catch(http.client, { limits = bad })
      assert.equal("invalid", err.kind)
      assert.truthy(err.message:find("limits." .. k, 1, true), err.message)
    end
  end)
end)

describe("corio.http bad input", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  local function invalid(fn, what)
    local err = catch(fn)
    assert.equal("invalid", err.kind)
    if what then assert.truthy(err.message:find(what, 1, true), err.message) end
  end

  it("raises kind invalid naming the argument, before anything is sent", function()
    local plain = http.client {}
    invalid(function() plain:get(42) end, "url")
    invalid(function() plain:get("127.0.0.1/x") end, "without scheme")
    invalid(function() plain:get("ftp://x/y") end, "scheme")
    invalid(function() c:get("/ok", { bogus = 1 }) end, "bogus")
    invalid(function() c:get("/ok", "opts") end, "opts")
    invalid(function() c:get("/ok", { headers = { ["X-A"] = "a\r\nX-Evil: 1" } }) end, "X-A")
    invalid(function() c:get("/ok", { timeout = -1 }) end, "timeout")
    invalid(function() c:get("/ok", { timeout = { lunch = 1 } }) end, "lunch")
    invalid(function() c:post("/ok", { json = {}, body = "x" }) end, "only one")
    invalid(function() http.client { nope = true } end, "nope")
    invalid(function() http.client(3) end)
    invalid(function() c:request(nil, "/ok") end, "method")
    assert.equal(0, c:stats().opened)
    assert.equal(0, plain:stats().opened)
    plain:close()
  end)
end)

describe("corio.http faults", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  local function fails(kind, fn)
    local err = catch(within, 3, fn)
    assert.equal(kind, err.kind, tostring(err))
    return err
  end

  it("refused port: kind connect", function()
    local err = fails("connect", function() return c:get("http://127.0.0.1:1/") end)
    assert.truthy(err.message:find("GET http://127.0.0.1:1/", 1, true))
    still_works(c)
  end)

  it("slow headers: timeout, phase read", function()
    local t0 = corio.now()
    local err = fails("timeout", function() return c:get("/slow-headers?d=3", { timeout = 0.3 }) end)
    assert.equal("read", err.phase)
    assert.is_true(corio.now() - t0 < 1.5)
    still_works(c)
  end)

  it("slow body: timeout, phase read (the longest gap without bytes)", function()
    local err = fails("timeout", function() return c:get("/slow-body?d=3", { timeout = { read = 0.3 } }) end)
    assert.equal("read", err.phase)
    still_works(c)
  end)

  it("a body that keeps dripping never hits the read timeout", function()
    local r = within(3, c.get, c, "/drip?n=10&d=0.05", { timeout = { read = 0.3 } })
    assert.equal("..........", r:text())
  end)

  it("total timeout: phase total", function()
    local err = fails("timeout", function()
      return c:get("/drip?n=40&d=0.05", { timeout = { read = 1, total = 0.4 } })
    end)
    assert.equal("total", err.phase)
    still_works(c)
  end)

  it("no free connection: timeout, phase pool", function()
    local c1 = http.client { base_url = base, limits = { max_connections = 1 } }
    corio.scope(function(s)
      local hog = s:spawn(function() return pcall(c1.get, c1, "/slow-headers?d=1") end)
      corio.sleep(0.1)
      local err = fails("timeout", function() return c1:get("/ok", { timeout = { pool = 0.2 } }) end)
      assert.equal("pool", err.phase)
      hog:join()
    end)
    still_works(c1)
    c1:close()
  end)

  it("reset mid-body: kind network, and the message says reset", function()
    for _ = 1, 5 do
      local err = fails("network", function() return c:get("/reset") end)
      -- the socket's own error, not libuv's "select/poll returned error"
      assert.truthy(err.message:lower():find("reset", 1, true), err.message)
    end
    still_works(c)
  end)

  it("truncated chunked body: kind protocol", function()
    fails("protocol", function() return c:get("/truncated-chunked") end)
    still_works(c)
  end)

  it("garbage status line: kind protocol", function()
    fails("protocol", function() return c:get("/garbage") end)
    still_works(c)
  end)

  it("oversized headers: kind protocol", function()
    fails("protocol", function() return c:get("/big-headers") end)
    still_works(c)
  end)

  it("an upload the server never reads: timeout, phase write", function()
    local body = string.rep("u", 64 * 1024 * 1024)  -- beyond any socket buffer
    local t0 = corio.now()
    local err = fails("timeout", function()
      return c:post("/no-read?d=3", { body = body, timeout = { write = 0.3 } })
    end)
    assert.equal("write", err.phase)
    assert.is_true(corio.now() - t0 < 2)
    still_works(c)
  end)

  it("a server that never answers: the deadline cancels the transfer at once", function()
    local t0 = corio.now()
    assert.is_false(corio.move_on_after(0.2, c.get, c, "/never"))
    assert.is_true(corio.now() - t0 < 1)
    assert.equal(0, c:stats().in_flight)
    still_works(c)
  end)

  it("task:cancel() removes the transfer and leaves the client usable", function()
    corio.scope(function(s)
      local t = s:spawn(c.get, c, "/never")
      corio.sleep(0.05)
      assert.equal(1, c:stats().in_flight)
      t:cancel()
      assert.is_true(corio.is_cancelled(catch(t.join, t)))
      assert.equal(0, c:stats().in_flight)
    end)
    still_works(c)
  end)
end)

describe("corio.http redirects", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  it("are off by default", function()
    local r = c:get("/redirect/2")
    assert.equal(302, r.status)
    assert.equal("/redirect/1", r.headers.location)
  end)

  it("follow a 302 chain to the final URL when asked", function()
    local r = within(3, c.get, c, "/redirect/3", { follow_redirects = true })
    assert.equal(200, r.status)
    assert.equal("landed", r:text())
    assert.equal(url("/redirect/0"), r.url)
  end)

  it("stop after max_redirects with kind redirect", function()
    local c2 = http.client { base_url = base, follow_redirects = true, max_redirects = 2 }
    local err = catch(within, 3, c2.get, c2, "/redirect/5")
    assert.equal("redirect", err.kind)
    still_works(c2)
    c2:close()
  end)

  it("refuse a redirect to another scheme", function()
    local err = catch(within, 3, c.get, c, "/redirect-to?url=ftp://x/y", { follow_redirects = true })
    assert.equal("redirect", err.kind)
  end)

  it("turn POST into GET on 303 and keep it on 307", function()
    local to = http.urlencode(url("/echo"))
    local e = c:post("/redirect-to?code=303&url=" .. to, { body = "b", follow_redirects = true }):json()
    assert.equal("GET", e.method)
    assert.equal("", e.body)
    e = c:post("/redirect-to?code=307&url=" .. to, { body = "b", follow_redirects = true }):json()
    assert.equal("POST", e.method)
    assert.equal("b", e.body)
  end)

  it("drop Authorization when the origin changes", function()
    local other = http.urlencode(base:gsub("127%.0%.0%.1", "localhost") .. "/echo")
    local e = c:get("/redirect-to?url=" .. other,
      { headers = { Authorization = "secret" }, follow_redirects = true }):json()
    assert.is_nil(e.headers["authorization"])
    e = c:get("/redirect-to?url=/echo", { headers = { Authorization = "secret" }, follow_redirects = true }):json()
    assert.equal("secret", e.headers["authorization"])
  end)
end)

describe("corio.http streams", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  it("return after the headers and iterate the body", function()
    local r = c:stream("GET", "/stream?n=20&size=10000")
    assert.equal(200, r.status)
    local n = 0
    for chunk in r:iter_bytes() do n = n + #chunk end
    assert.equal(200000, n)
    local err = catch(r.iter_bytes, r)
    assert.equal("closed", err.kind)
  end)

  it("iter_lines joins lines split across chunks", function()
    local lines = {}
    c:stream("GET", "/lines", nil, function(r)
      for line in r:iter_lines() do lines[#lines + 1] = line end
    end)
    assert.same({ "one", "two", "three", "four" }, lines)
  end)

  it("reading after close() raises kind closed; the client goes on", function()
    local r = c:stream("GET", "/stream?n=100&size=100000")
    r:iter_bytes()()
    r:close()
    assert.equal("closed", catch(r.iter_bytes, r).kind)
    still_works(c)
  end)

  it("backpressure: a slow consumer pauses the transfer, the buffer stays bounded", function()
    local r = c:stream("GET", "/stream?n=400&size=65536")  -- 25 MiB
    local n = #r:iter_bytes()()
    corio.sleep(0.3)
    local held, paused = r:_buffered()
    assert.is_true(paused)
    assert.is_true(held <= 2 * 1024 * 1024, "held " .. held)
    for chunk in r:iter_bytes() do
      n = n + #chunk
      assert.is_true(#chunk <= 64 * 1024)
    end
    assert.equal(400 * 65536, n)
    still_works(c)
  end)

  it("a stream dropped unread is released, also while another is being read", function()
    -- A's finalizer may run inside B's read, while curl calls back into
    -- corio (the release then waits until curl returned)
    do
      local a = c:stream("GET", "/stream?n=400&size=65536")
      assert.equal(200, a.status)
    end
    local r = c:stream("GET", "/stream?n=400&size=65536")
    local n, i = 0, 0
    for chunk in r:iter_bytes() do
      n = n + #chunk
      i = i + 1
      if i % 50 == 0 then collectgarbage("step", 100) end
    end
    assert.equal(400 * 65536, n)
    collectgarbage()
    collectgarbage()
    still_works(c)
    local s = c:stats()
    assert.equal(0, s.in_flight)
    assert.equal(1, s.idle)  -- A's connection closed (body not drained)
  end)

  it("stream timeouts and faults raise while reading", function()
    local r = c:stream("GET", "/slow-body?d=3", { timeout = { read = 0.3 } })
    local err = catch(within, 3, function() for _ in r:iter_bytes() do end end)
    assert.equal("timeout", err.kind)
    assert.equal("read", err.phase)
    still_works(c)
  end)

  it("a long Content-Length body read in bursts arrives whole and in order", function()
    -- An HTTP/1 stream pauses at the end of a read's share and curl keeps
    -- the rest: every byte must come back once, in its place.
    local parts = {}
    for i = 1, 500000 do parts[i] = ("%07d"):format(i) end
    local sent = table.concat(parts)  -- 3.5 MB, every 7 bytes different
    local r = c:stream("POST", "/echo", { body = sent })
    assert.equal(200, r.status)
    local got, i = {}, 0
    within(20, function()
      for chunk in r:iter_bytes() do
        i = i + 1
        got[i] = chunk
        assert.is_true(#chunk <= 64 * 1024)
        if i % 40 == 1 then corio.sleep(0.02) end  -- paused meanwhile
      end
    end)
    local body = table.concat(got)
    local at = body:find('"body": "', 1, true)
    assert.truthy(at, "no body field in the echo")
    assert.equal(sent, body:sub(at + 9, at + 8 + #sent))
    assert.equal('"', body:sub(at + 9 + #sent, at + 9 + #sent))
    still_works(c)
  end)

  it("a large chunked body read in bursts arrives whole", function()
    local r = c:stream("GET", "/stream?n=300&size=40000")  -- 12 MB
    local n, i = 0, 0
    within(20, function()
      for chunk in r:iter_bytes() do
        i = i + 1
        n = n + #chunk
        assert.equal(("y"):rep(#chunk), chunk)
        if i % 100 == 1 then corio.sleep(0.02) end
      end
    end)
    assert.equal(300 * 40000, n)
    still_works(c)
  end)
end)

describe("corio.http transport", function()
  it("runs requests through an in-process function", function()
    local seen
    local c = http.client {
      base_url = "http://mock",
      transport = function(req)
        seen = req
        if req.url:find("/fail") then error("boom") end
        return { status = 201, headers = { ["X-Y"] = "z", ["Set-Cookie"] = { "a", "b" } }, body = "made" }
      end,
    }
    local r = c:post("/things", { json = { 1 }, headers = { ["X-Trace"] = "t" } })
    assert.equal(201, r.status)
    assert.equal("made", r:text())
    assert.equal("z", r.headers["x-y"])
    assert.same({ "a", "b" }, r:get_all("set-cookie"))
    assert.equal("POST", seen.method)
    assert.equal("http://mock/things", seen.url)
    assert.equal("t", seen.headers["X-TRACE"])
    assert.equal("[1]", seen.body)
    assert.truthy(tostring(catch(c.get, c, "/fail")):find("boom"))
    local chunks = { "ab", "cd" }
    local c2 = http.client { transport = function()
      local i = 0
      return { status = 200, body = function() i = i + 1; return chunks[i] end }
    end }
    local got = {}
    c2:stream("GET", "http://mock/s", function(s)
      for ch in s:iter_bytes() do got[#got + 1] = ch end
    end)
    assert.same(chunks, got)
  end)
end)

describe("corio.http client lifetime", function()
  it("close() fails requests in flight with kind closed and may be repeated", function()
    local c = http.client { base_url = base }
    corio.scope(function(s)
      local t = s:spawn(function() return catch(c.get, c, "/never") end)
      corio.sleep(0.05)
      c:close()
      assert.equal("closed", t:join().kind)
    end)
    c:close()
    assert.equal("closed", catch(c.get, c, "/ok").kind)
  end)

  it("proxy variables are read when a client is made", function()
    -- made while http_proxy names the test server, a client sends through
    -- it (the server answers any absolute URL); one made before it was
    -- set connects directly (libcurl would look at every request)
    local ffi = require("ffi")
    pcall(ffi.cdef, "int setenv(const char *, const char *, int);"
      .. " int unsetenv(const char *);")
    local direct = http.client {}
    ffi.C.setenv("http_proxy", base, 1)
    local ok, r, e = pcall(function()
      local c = http.client {}
      local res = within(2, c.get, c, "http://127.0.0.1:1/ok")
      c:close()
      return res, catch(within, 2, direct.get, direct, "http://127.0.0.1:1/ok")
    end)
    ffi.C.unsetenv("http_proxy")
    direct:close()
    assert(ok, r)
    assert.equal(200, r.status)
    assert.equal("hello", r:text())
    assert.equal("connect", e.kind)
  end)

  it("rule 11: outside a loop, a request runs synchronously", function()
    local luajit = os.getenv("LUAJIT") or "luajit"
    local cmd = ("LUA_PATH=%q LUA_CPATH=%q %s -e %q"):format(
      os.getenv("CORIO_LUA_PATH") or (src .. "/lua/?.lua;" .. src .. "/lua/?/init.lua;;"),
      os.getenv("CORIO_LUA_CPATH") or (src .. "/build/lib/lua/5.1/?.so;;"), luajit,
      "local http = require 'corio.http'; local r = http.get('" .. url("/ok") .. "');"
        .. "io.write(r.status, ' ', r:text()); local s = http.stream('GET', '"
        .. url("/stream?n=3&size=5") .. "'); local n = 0;"
        .. "for ch in s:iter_bytes() do n = n + #ch end io.write(' ', n)")
    local p = io.popen(cmd)
    local out = p:read("*a")
    p:close()
    assert.equal("200 hello 15", out)
  end)
end)

describe("corio.http TLS (self-signed certificate)", function()
  local dir, remove_dir, cert, tls_base, stop_tls, why_not

  setup(function()
    why_not = helpers.no_openssl()
    if why_not then return end
    dir, remove_dir = helpers.temp_dir("corio-tls")
    local key
    cert, key = helpers.self_signed(dir)
    tls_base, stop_tls = helpers.http_server(("--tls %s %s"):format(cert, key), "https")
  end)

  teardown(function()
    if stop_tls then stop_tls() end
    if remove_dir then remove_dir() end
  end)

  it("verifies by default: an unknown certificate fails with kind tls", function()
    if why_not then return pending(why_not) end
    local c = http.client { base_url = tls_base }
    local err = catch(within, 5, c.get, c, "/ok")
    assert.equal("tls", err.kind, tostring(err))
    assert.truthy(err.message:find("GET " .. tls_base .. "/ok", 1, true))
    c:close()
  end)

  it("verify = false accepts it", function()
    if why_not then return pending(why_not) end
    local c = http.client { base_url = tls_base, verify = false }
    local r = within(5, c.get, c, "/ok")
    assert.equal(200, r.status)
    assert.equal("hello", r:text())
    c:close()
  end)

  it("a CA bundle holding the certificate verifies it", function()
    if why_not then return pending(why_not) end
    for _, opts in ipairs { { ca_bundle = cert }, { verify = cert } } do
      opts.base_url = tls_base
      local c = http.client(opts)
      local r = within(5, c.get, c, "/ok")
      assert.equal(200, r.status)
      assert.equal("hello", r:text())
      c:close()
    end
    -- and the client that failed goes on working against a plain server
    local c = http.client { base_url = tls_base }
    assert.equal("tls", catch(within, 5, c.get, c, "/ok").kind)
    assert.equal(200, within(2, c.get, c, base .. "/ok").status)
    c:close()
  end)
end)
