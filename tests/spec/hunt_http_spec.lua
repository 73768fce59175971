-- hunt_http_spec.lua: corio.http behaviours found wrong in a bug hunt
-- (each test failed before its fix), against tests/http/server.py.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch
local http = require("corio.http")

local base, stop_server

-- a request that must end within secs (a hang fails the test)
local within = corio.timeout

local function still_works(c) helpers.http_still_works(c, 2) end

-- A client whose transport streams the given chunks.
local function chunked(chunks)
  return http.client { transport = function()
    local i = 0
    return { status = 200, body = function() i = i + 1; return chunks[i] end }
  end }
end

setup(function() base, stop_server = helpers.http_server() end)
teardown(function() if stop_server then stop_server() end end)

describe("corio.http requests without a body", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  -- curl's POST without POSTFIELDS reads the body from stdin (its default
  -- read callback), chunked, blocking the whole loop until stdin's EOF.
  it("POST, PUT and PATCH send Content-Length: 0 and nothing else (stdin is not read)", function()
    for _, m in ipairs { "post", "put", "patch" } do
      local j = within(5, c[m], c, "/echo"):json()
      assert.equal(m:upper(), j.method)
      assert.equal("0", j.headers["content-length"], m)
      assert.is_nil(j.headers["transfer-encoding"], m)
      assert.is_nil(j.headers["content-type"], m)
      assert.is_nil(j.headers["expect"], m)
      assert.equal("", j.body)
    end
    local j = within(5, c.request, c, "POST", "/echo"):json()
    assert.equal("0", j.headers["content-length"])
    still_works(c)
  end)

  -- An empty body left the transfer in the write phase until the
  -- response: the read timeout did not apply, the write timeout did.
  it("an empty body: waiting for the response is the read phase", function()
    local t0 = corio.now()
    local err = catch(within, 5, c.post, c, "/slow-headers?d=1.5",
      { body = "", timeout = { read = 0.3, write = 10 } })
    assert.equal("timeout", err.kind)
    assert.equal("read", err.phase)
    assert.is_true(corio.now() - t0 < 1.2)
    local r = within(5, c.post, c, "/slow-headers?d=0.6",
      { form = {}, timeout = { read = 5, write = 0.2 } })
    assert.equal(200, r.status)
    still_works(c)
  end)
end)

describe("corio.http iter_lines", function()
  -- Lines were found by matching the whole buffered line again for each
  -- chunk from every start position: a long line cost O(n^2) per chunk
  -- (a 64 KiB line took over a minute).
  it("a long line split over many chunks takes linear time", function()
    local chunks = {}
    for i = 1, 64 do chunks[i] = string.rep(string.char(96 + i % 26), 1024) end
    chunks[#chunks + 1] = "\r\nnext"
    local c = chunked(chunks)
    local r = c:stream("GET", "http://x/")
    local t0 = os.clock()
    local lines = {}
    for line in r:iter_lines() do lines[#lines + 1] = line end
    assert.is_true(os.clock() - t0 < 2, "took " .. (os.clock() - t0) .. " s")
    assert.equal(2, #lines)
    assert.equal(table.concat(chunks, "", 1, 64), lines[1])
    assert.equal("next", lines[2])
  end)

  it("over HTTP: a 1 MiB body without a newline is one line", function()
    local c = http.client { base_url = base }
    local r = within(10, c.stream, c, "GET", "/stream?n=256&size=4096")
    local t0 = os.clock()
    local n, len = 0, 0
    for line in r:iter_lines() do n = n + 1; len = len + #line end
    assert.is_true(os.clock() - t0 < 5, "took " .. (os.clock() - t0) .. " s")
    assert.equal(1, n)
    assert.equal(256 * 4096, len)
    still_works(c)
    c:close()
  end)

  it("keeps CRLF, LF, blank lines, a last line without newline and empty chunks", function()
    local function lines(chunks)
      local r = chunked(chunks):stream("GET", "http://x/")
      local out = {}
      for line in r:iter_lines() do out[#out + 1] = line end
      return out
    end
    assert.same({ "a", "b", "c" }, lines { "a\r\nb\r", "\nc" })
    assert.same({ "a", "b" }, lines { "a\nb" })
    assert.same({}, lines {})
    assert.same({ "a" }, lines { "", "", "a", "", "\n" })
    assert.same({ "", "", "" }, lines { "\n\n", "\r\n" })
    assert.same({ "a" }, lines { "a\r" })
    assert.same({ "ab", "c", "d" }, lines { "a", "b\nc\n", "d" })
  end)

  -- A lone "\r" did not end a line (httpx's line decoder splits on "\n",
  -- "\r\n" and "\r"): "a\rb" was one line.
  it("a lone CR ends a line, also at a chunk's end and at the body's end", function()
    local function lines(chunks)
      local r = chunked(chunks):stream("GET", "http://x/")
      local out = {}
      for line in r:iter_lines() do out[#out + 1] = line end
      return out
    end
    assert.same({ "a", "b" }, lines { "a\rb" })
    assert.same({ "a", "b", "c" }, lines { "a\rb\rc" })
    assert.same({ "a", "", "b" }, lines { "a\r\rb" })
    assert.same({ "a", "", "b" }, lines { "a\n\rb" })
    -- a CR at a chunk's end waits for the next chunk: "\n" there is the
    -- same line end, anything else starts the next line
    assert.same({ "a", "b" }, lines { "a\r", "\nb" })
    assert.same({ "a", "b" }, lines { "a\r", "", "\nb" })
    assert.same({ "a", "b" }, lines { "a\r", "b" })
    assert.same({ "a", "", "b" }, lines { "a\r", "\rb" })
    assert.same({ "a", "" }, lines { "a\r", "\r" })
    assert.same({ "a", "", "b" }, lines { "a\r", "\n\nb" })
    -- a trailing CR ends the last line; a trailing CRLF adds no line
    assert.same({ "a" }, lines { "a\r" })
    assert.same({ "a", "" }, lines { "a\n\r" })
    assert.same({ "a" }, lines { "a\r\n" })
    assert.same({ "x\0y", "z" }, lines { "x\0", "y\r", "z" })
  end)

  it("over HTTP (the stream form and a whole response): CR, CRLF and LF split lines", function()
    local want = { "a", "b", "c", "", "d", "e" }
    local c = http.client { base_url = base }
    local got = {}
    within(5, c.stream, c, "GET", "/cr-lines", function(r)
      for line in r:iter_lines() do got[#got + 1] = line end
    end)
    assert.same(want, got)
    got = {}
    for line in within(5, c.get, c, "/cr-lines"):iter_lines() do got[#got + 1] = line end
    assert.same(want, got)
    still_works(c)
    c:close()
  end)
end)

describe("corio.http bad input found late", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  local function invalid(fn, what)
    local err = catch(fn)
    assert.equal("invalid", err.kind, tostring(err))
    if what then assert.truthy(err.message:find(what, 1, true), err.message) end
    return err
  end

  -- A string max_redirects failed with "attempt to compare" after the
  -- first response came.
  it("max_redirects must be a non-negative integer", function()
    invalid(function() http.client { max_redirects = "5" } end, "max_redirects")
    invalid(function() http.client { max_redirects = -1 } end, "max_redirects")
    invalid(function() http.client { max_redirects = 1.5 } end, "max_redirects")
    invalid(function() c:get("/redirect/2", { follow_redirects = true, max_redirects = "x" }) end,
      "max_redirects")
    assert.equal(0, c:stats().opened)
    assert.equal(200, c:get("/redirect/2", { follow_redirects = true, max_redirects = 2 }).status)
  end)

  -- A table value that is no array was dropped, a function sent as
  -- "function: 0x...", a boolean key as "true=nil".
  it("params and form values: scalars or arrays of them, keys strings or numbers", function()
    invalid(function() c:get("/echo", { params = { a = { b = 1 } } }) end, "params")
    invalid(function() c:get("/echo", { params = { a = print } }) end, "params")
    invalid(function() c:get("/echo", { params = { [true] = "a" } }) end, "params")
    invalid(function() c:get("/echo", { params = { a = { 1, {} } } }) end, "params")
    invalid(function() c:post("/echo", { form = { a = { x = 1 } } }) end, "form")
    assert.equal(0, c:stats().opened)
    local j = c:get("/echo", { params = { a = true, b = 1.5, c = "x y", d = { 1, 2 }, e = {}, [3] = "n" } }):json()
    assert.equal("3=n&a=true&b=1.5&c=x%20y&d=1&d=2", j.query)
    j = c:post("/echo", { form = { k = { "v", false } } }):json()
    assert.equal("k=v&k=false", j.body)
  end)

  -- The argument numbers counted from the method's, not the call's.
  it("errors give the argument's real position", function()
    invalid(function() http.client { headers = { ["a b"] = "x" } } end, "#1 to 'client'")
    invalid(function() http.client { timeout = "5" } end, "#1 to 'client'")
    invalid(function() c:request("GET", 5) end, "#2 to 'request' (url")
    invalid(function() c:request("GET", "/ok", { bogus = 1 }) end, "#3 to 'request'")
    invalid(function() c:stream("GET", "/ok", { timeout = -1 }) end, "#3 to 'stream'")
    invalid(function() c:request(5, "/ok") end, "#1 to 'request' (method")
    invalid(function() c:get("/ok", { headers = 5 }) end, "#2 to 'get'")
  end)
end)

describe("corio.http headers", function()
  local c
  before_each(function() c = http.client { base_url = base, headers = { ["X-Def-Empty"] = "" } } end)
  after_each(function() c:close() end)

  -- "Name: " is curl's way to remove a header: an empty value was not sent.
  it("a header with an empty value is sent (as httpx sends it)", function()
    local j = c:get("/echo", { headers = { ["X-Empty"] = "" } }):json()
    assert.equal("", j.headers["x-empty"])
    assert.equal("", j.headers["x-def-empty"])
    -- a body without a Content-Type still gets none (not curl's default)
    j = c:post("/echo", { body = "abc" }):json()
    assert.is_nil(j.headers["content-type"])
    assert.equal("abc", j.body)
  end)

  it("a transport sees no Content-Type for a body without one", function()
    local seen
    local tc = http.client { transport = function(req)
      seen = req.headers
      return { status = 200 }
    end }
    tc:post("http://x/", { body = "abc" })
    assert.is_nil(seen["content-type"])
    tc:post("http://x/", { json = { 1 } })
    assert.equal("application/json", seen["content-type"])
  end)
end)

describe("corio.http redirects with a body", function()
  -- The header lines rebuilt for a new origin lost "Expect:", so curl
  -- asked for 100-continue (a 1 s stall on servers that do not answer it).
  it("a 307 to another origin re-sends the body without Expect: 100-continue", function()
    local c = http.client { base_url = base, follow_redirects = true }
    local other = base:gsub("127%.0%.0%.1", "localhost") .. "/echo"
    local r = c:post("/redirect-to?code=307&url=" .. http.urlencode(other),
      { body = string.rep("x", 2e6), headers = { Authorization = "Bearer x" } })
    local j = r:json()
    assert.equal(other, r.url)
    assert.equal("POST", j.method)
    assert.equal(2e6, #j.body)
    assert.is_nil(j.headers.expect)
    assert.is_nil(j.headers.authorization)
    c:close()
  end)
end)

describe("corio.http transport client", function()
  -- A closed transport client went on sending.
  it("a closed client raises kind closed", function()
    local calls = 0
    local tc = http.client { transport = function() calls = calls + 1; return { status = 200 } end }
    tc:close()
    local err = catch(tc.get, tc, "http://x/")
    assert.equal("closed", err.kind)
    assert.equal(0, calls)
  end)
end)

describe("corio.http streams shared between tasks", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  -- A second reader replaced the first in the transfer: the first was
  -- never woken again (it hung), the runtime's count of waits drifted.
  it("a second task reading while one waits gets kind invalid; the first goes on", function()
    local r = within(2, c.stream, c, "GET", "/slow-body?d=0.5")
    local it = r:iter_bytes()
    assert.equal("12345", it())
    local a = corio.spawn(function() return it() end)
    finally(function() a:cancel() end)  -- before the fix, a waited forever
    corio.sleep(0.05)
    local err = catch(within, 2, it)
    assert.equal("invalid", err.kind)
    assert.truthy(tostring(err.message):find("another task", 1, true), err.message)
    assert.equal("67890", within(3, a.join, a))
    assert.is_nil(within(2, it))
    still_works(c)
  end)

  -- close() while another task waited for a chunk did nothing: the
  -- transfer (and its connection) stayed until the stream was collected.
  it("close() while another task waits for a chunk wakes it with kind closed and releases the transfer", function()
    local r = within(2, c.stream, c, "GET", "/slow-body?d=30")
    local t = corio.spawn(function() return catch(function() for _ in r:iter_bytes() do end end) end)
    finally(function() t:cancel() end)  -- before the fix, t waited for the server
    corio.sleep(0.2)
    assert.equal(1, c:stats().in_flight)
    r:close()
    local err = within(2, t.join, t)
    assert.equal("closed", err.kind)
    assert.equal(0, c:stats().in_flight)
    assert.equal("closed", catch(r.iter_bytes, r).kind)
    still_works(c)
  end)
end)

describe("corio.http total timeout", function()
  -- A port whose listen backlog is full: a connect to it hangs (the
  -- SYNs are dropped), as to an unreachable host.
  local hole, stop_hole
  setup(function()
    local p = assert(io.popen([[exec /usr/bin/python3 -c '
import os, socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)
cs = []
for i in range(8):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(s.getsockname())
    except BlockingIOError: pass
    cs.append(c)
print("PORT %d %d" % (s.getsockname()[1], os.getpid()), flush=True)
parent = os.getppid()
for i in range(600):
    if os.getppid() != parent: break
    time.sleep(0.5)
']]))
    local port, pid = p:read("*l"):match("^PORT (%d+) (%d+)")
    hole = "http://127.0.0.1:" .. port .. "/"
    stop_hole = function() os.execute("kill " .. pid); p:close() end
  end)
  teardown(function() if stop_hole then stop_hole() end end)

  -- The total timeout is curl's, which does not run while a transfer
  -- waits for a connection, and a timeout was named after the phase the
  -- transfer was in: "pool" or "connect" though the total one expired.
  it("also runs while waiting for a free connection, and says phase total", function()
    local c = http.client { base_url = base, limits = { max_connections = 1 } }
    local t = corio.spawn(function() return c:get("/slow-headers?d=1.5") end)
    corio.sleep(0.1)
    local t0 = corio.now()
    local err = catch(within, 5, c.get, c, "/ok", { timeout = { pool = 5, total = 0.3 } })
    assert.equal("timeout", err.kind)
    assert.equal("total", err.phase)
    assert.is_true(corio.now() - t0 < 1.0, "took " .. (corio.now() - t0))
    assert.equal(200, within(3, t.join, t).status)
    assert.equal(0, c:stats().in_flight)
    still_works(c)
    c:close()
  end)

  -- curl closes the socket of a connect that did not complete without
  -- closesocket_cb: each one stayed counted as an open idle connection.
  it("a connect that times out or is cancelled leaves no idle connection in stats()", function()
    local c = http.client { base_url = base }
    for _ = 1, 3 do
      assert.equal("timeout", catch(within, 5, c.get, c, hole, { timeout = { connect = 0.2 } }).kind)
    end
    assert.equal(0, c:stats().idle)
    for _ = 1, 3 do
      local t = corio.spawn(function() return c:get(hole) end)
      corio.sleep(0.1)
      t:cancel()
      pcall(t.join, t)
    end
    local s = c:stats()
    assert.equal(0, s.idle)
    assert.equal(0, s.in_flight)
    assert.equal(6, s.opened)
    still_works(c)
    assert.equal(1, c:stats().idle)
    c:close()
  end)

  it("while connecting says phase total when the total one expired", function()
    local c = http.client {}
    local err = catch(within, 5, c.get, c, hole, { timeout = { connect = 5, total = 0.4 } })
    assert.equal("timeout", err.kind)
    assert.equal("total", err.phase)
    err = catch(within, 5, c.get, c, hole, { timeout = { connect = 0.4, total = 5 } })
    assert.equal("timeout", err.kind)
    assert.equal("connect", err.phase)
    assert.equal(0, c:stats().in_flight)
    c:close()
  end)
end)

describe("corio.http whole responses", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  -- They raised kind closed ("the stream is closed"); httpx iterates a
  -- read response's content.
  it("iter_bytes and iter_lines go over the body of a response that is no stream", function()
    local r = c:get("/lines")
    local lines = {}
    for line in r:iter_lines() do lines[#lines + 1] = line end
    assert.same({ "one", "two", "three", "four" }, lines)
    local parts = {}
    for chunk in r:iter_bytes() do parts[#parts + 1] = chunk end
    assert.equal(r:text(), table.concat(parts))
    local n = 0
    for _ in c:get("/status/204"):iter_bytes() do n = n + 1 end
    assert.equal(0, n)
  end)
end)

describe("corio.http checks found late", function()
  -- A relative URL with whitespace went to curl ("URL using bad/illegal
  -- format"); an absolute one got the module's own message.
  it("a relative URL with whitespace is refused like an absolute one", function()
    local c = http.client { base_url = base }
    local err = catch(c.get, c, "/a b")
    assert.equal("invalid", err.kind)
    assert.truthy(err.message:find("whitespace", 1, true), err.message)
    assert.equal(0, c:stats().opened)
    c:close()
  end)

  -- r:get_all(5) failed with "attempt to index local 'name'".
  it("get_all wants a header name", function()
    local tc = http.client { transport = function() return { status = 200 } end }
    local err = catch(function() return tc:get("http://x/"):get_all(5) end)
    assert.equal("invalid", err.kind)
    assert.truthy(err.message:find("#1 to 'get_all'", 1, true), err.message)
  end)

  -- A transport response with a string status or headers failed with a
  -- Lua error from deep inside ("attempt to compare", "bad argument to
  -- 'pairs'").
  it("a transport response of the wrong shape is kind protocol", function()
    for _, resp in ipairs {
      { status = "200" }, { status = 200.5 }, { status = 200, headers = "x" },
      { status = 200, body = true }, { status = 200, headers = { [1] = "x" } },
    } do
      local tc = http.client { transport = function() return resp end }
      local err = catch(tc.get, tc, "http://x/")
      assert.equal("protocol", err.kind, tostring(err))
      assert.truthy(err.message:find("transport", 1, true), err.message)
    end
  end)
end)

describe("corio.http transport redirects", function()
  -- A relative Location was joined to the origin's root: "c" from /a/b
  -- went to /c, "../f" from /d/e/ to /f, "#h" lost the query.
  it("resolve a relative Location against the request's URL (RFC 3986)", function()
    local routes = {
      ["http://x/a/b"] = "c?z=1", ["http://x/d/e/"] = "../f", ["http://x/g?q=1"] = "#h",
      ["http://x/i/j"] = "/k", ["http://x/l"] = "//y/m", ["http://x/n/o"] = "?p=2",
    }
    local c = http.client { follow_redirects = true, transport = function(req)
      local loc = routes[req.url]
      if loc then return { status = 302, headers = { Location = loc } } end
      return { status = 200, body = req.url }
    end }
    assert.equal("http://x/a/c?z=1", c:get("http://x/a/b"):text())
    assert.equal("http://x/d/f", c:get("http://x/d/e/"):text())
    assert.equal("http://x/g?q=1#h", c:get("http://x/g?q=1").url)
    assert.equal("http://x/k", c:get("http://x/i/j"):text())
    assert.equal("http://y/m", c:get("http://x/l"):text())
    assert.equal("http://x/n/o?p=2", c:get("http://x/n/o"):text())
  end)
end)

describe("corio.http stream callback", function()
  -- A callback that is no function was found out only after the request
  -- was sent, with "attempt to call a number value".
  it("that is no function is kind invalid, before anything is sent", function()
    local c = http.client { base_url = base }
    local err = catch(c.stream, c, "GET", "/ok", nil, 42)
    assert.equal("invalid", err.kind)
    assert.truthy(err.message:find("#4 to 'stream'", 1, true), err.message)
    err = catch(http.stream, "GET", base .. "/ok", {}, "f")
    assert.equal("invalid", err.kind)
    assert.equal(0, c:stats().opened)
    assert.equal("hello", c:stream("GET", "/ok", nil, setmetatable({}, { __call = function(_, r) return r:read() end })))
    c:close()
  end)
end)

describe("corio.http numbers in params, form and headers", function()
  -- They were tostring-ed, which keeps 14 significant digits:
  -- 123456789012345 went out as 1.2345678901234e+14.
  it("are sent without losing digits", function()
    local c = http.client { base_url = base }
    local j = c:get("/echo", {
      params = { id = 123456789012345, big = 2 ^ 53, f = 0.1, t = 1 / 3, n = -7, e = 1e300, a = { 2 ^ 60 } },
      headers = { ["X-Id"] = 1234567890123456 },
    }):json()
    assert.equal("a=1152921504606846976&big=9007199254740992&e=1e%2B300&f=0.1&id=123456789012345"
      .. "&n=-7&t=0.33333333333333331", j.query)
    assert.equal("1234567890123456", j.headers["x-id"])
    j = c:post("/echo", { form = { [123456789012345] = 1 } }):json()
    assert.equal("123456789012345=1", j.body)
    assert.equal("1e%2B20", http.urlencode(1e20))
    c:close()
  end)
end)

describe("corio.http json bodies", function()
  -- cjson writes 14 significant digits: {id = 123456789012345} went out
  -- as 1.2345678901234e+14.
  it("keep every digit of their numbers", function()
    local seen
    local tc = http.client { transport = function(req) seen = req.body; return { status = 200 } end }
    local shared = { 2 ^ 53 }
    local body = { id = 123456789012345, list = { 1, 0.1, 1 / 3, shared, shared }, n = -2 ^ 60,
                   s = "corio-num-1-1", small = 42 }
    tc:post("http://x/", { json = body })
    local back = require("cjson").decode(seen)
    assert.equal(123456789012345, back.id)
    assert.equal(1 / 3, back.list[3])
    assert.equal(2 ^ 53, back.list[4][1])
    assert.equal(2 ^ 53, back.list[5][1])
    assert.equal(-2 ^ 60, back.n)
    assert.equal("corio-num-1-1", back.s)
    assert.truthy(seen:find('"id":123456789012345', 1, true), seen)
    assert.truthy(seen:find('[9007199254740992]', 1, true), seen)
    -- the table is left as it was
    assert.equal(123456789012345, body.id)
    assert.equal(2 ^ 53, shared[1])
    tc:post("http://x/", { json = 123456789012345 })
    assert.equal("123456789012345", seen)
    tc:post("http://x/", { json = { a = 1, b = "x" } })
    assert.same({ a = 1, b = "x" }, require("cjson").decode(seen))
    local err = catch(tc.post, tc, "http://x/", { json = { 1e14 + 1, print } })
    assert.equal("invalid", err.kind)
  end)
end)

describe("corio.http non-ASCII URLs", function()
  -- Their bytes went out raw in the request line (invalid HTTP, refused by
  -- strict servers); httpx percent-encodes them.
  it("percent-encode the bytes of the path and query", function()
    local c = http.client { base_url = base }
    local r = c:get("/echo?q=ü")
    assert.equal("q=%C3%BC", r:json().query)
    assert.equal(base .. "/echo?q=%C3%BC", r.url)
    r = c:get(base .. "/echo?q=é&x=1")
    assert.equal("q=%C3%A9&x=1", r:json().query)
    c:close()
  end)
end)

describe("corio.http a stream whose reader was woken but has not run yet", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  -- Start task a reading (it waits for "67890"), then spin until the
  -- chunk is there: a is woken but has not run, and the spinning task
  -- acts on the stream first.
  local function woken_reader(r, it)
    local got = {}
    local a = corio.spawn(function()
      local ok, err = pcall(function() for chunk in it do got[#got + 1] = chunk end end)
      return ok, err
    end)
    finally(function() a:cancel() end)
    corio.yield()
    within(3, function()
      while a:status() ~= "done" do
        local len, paused = r:_buffered()
        if paused or len > 0 then break end
        corio.yield()
      end
    end)
    return a, got
  end

  -- close() then released the transfer under a, which got an empty
  -- chunk (the deliver path that "cannot happen") before kind closed.
  it("close() gives it kind closed and no empty chunk", function()
    local r = within(2, c.stream, c, "GET", "/slow-body?d=0.3")
    local it = r:iter_bytes()
    assert.equal("12345", it())
    local a, got = woken_reader(r, it)
    r:close()
    local ok, err = within(2, a.join, a)
    assert.is_false(ok)
    assert.equal("closed", err.kind)
    assert.same({}, got)
    assert.equal(0, c:stats().in_flight)
    still_works(c)
  end)

  -- A read then took a's chunk (a got an empty one), or, finding none,
  -- waited where a's delivery unset its wait: it was not woken again.
  it("a read by another task is kind invalid; the woken reader gets its chunk", function()
    local r = within(2, c.stream, c, "GET", "/slow-body?d=0.3")
    local it = r:iter_bytes()
    assert.equal("12345", it())
    local a, got = woken_reader(r, it)
    local err = catch(within, 2, it)
    assert.equal("invalid", err.kind)
    assert.is_true(within(2, a.join, a))
    assert.same({ "67890" }, got)
    still_works(c)
  end)
end)

-- The response handed to a woken task was made on its suspended thread,
-- where an allocation can run a __gc finaliser; one that raises, even
-- inside its own pcall, wrecked that thread (segfault).
describe("corio.http and a finaliser that raises", function()
  it("responses are handed over while such finalisers are due", function()
    local c = http.client { base_url = base }
    local junk = helpers.raising_garbage
    helpers.with_busy_gc(corio.scope, function(s)
      local done = false
      s:spawn(function()   -- keeps finalisers due while responses arrive
        while not done do junk(); corio.yield() end
      end)
      for _ = 1, 25 do
        junk()
        local r = within(5, c.get, c, "/ok")
        assert.equal("hello", r:text())
      end
      done = true
    end)
    still_works(c)
    c:close()
  end)
end)

-- curl's CURLMOPT_MAXCONNECTS, which max_keepalive was, bounds busy
-- connections too: each connection handed back while more than
-- max_keepalive were busy was closed, so requests queued for a pool
-- larger than max_keepalive opened a new connection each.
describe("corio.http max_keepalive below max_connections", function()
  it("queued requests reuse the pool's connections", function()
    local c = http.client { base_url = base,
      limits = { max_connections = 2, max_keepalive = 1 } }
    local fns = {}
    for i = 1, 8 do fns[i] = function() return c:get("/ok").status end end
    local r = within(5, corio.gather, fns)
    for i = 1, 8 do assert.equal(200, r[i]) end
    local s = c:stats()
    assert.equal(2, s.opened)
    assert.equal(6, s.reused)
    assert.equal(1, s.idle)   -- and no more than max_keepalive kept
    still_works(c)
    c:close()
  end)
end)

-- A stream's elapsed stopped when its headers came; httpx's runs until
-- the response is closed (its body read, or close()).
describe("corio.http elapsed of a stream", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  it("runs until the body was read to its end", function()
    local r = within(2, c.stream, c, "GET", "/slow-body?d=0.4")
    assert.is_true(r.elapsed < 0.35, "at the headers: " .. r.elapsed)
    assert.equal("1234567890", within(3, r.read, r))
    assert.is_true(r.elapsed >= 0.38 and r.elapsed < 2, "at the end: " .. r.elapsed)
    local e = r.elapsed
    corio.sleep(0.05)
    assert.equal(e, r.elapsed)   -- stopped
  end)

  it("runs until close(), in the stream form too", function()
    local r = within(2, c.stream, c, "GET", "/slow-body?d=30")
    corio.sleep(0.3)
    assert.is_true(r.elapsed < 0.25, "before close: " .. r.elapsed)
    r:close()
    assert.is_true(r.elapsed >= 0.28 and r.elapsed < 2, "at close: " .. r.elapsed)
    local e = r.elapsed
    corio.sleep(0.05)
    r:close()
    assert.equal(e, r.elapsed)
    local seen
    within(3, c.stream, c, "GET", "/slow-body?d=0.3", function(s)
      seen = s
      assert.is_true(s.elapsed < 0.25, "at the headers: " .. s.elapsed)
      corio.sleep(0.2)
    end)
    assert.is_true(seen.elapsed >= 0.18 and seen.elapsed < 2, "after the callback: " .. seen.elapsed)
    still_works(c)
  end)

  it("that ends in an error stops there too; a whole response's is unchanged", function()
    local r = within(2, c.stream, c, "GET", "/reset?d=0.4")
    local e0 = r.elapsed
    local err = catch(within, 3, r.read, r)
    assert.equal("network", err.kind)
    assert.is_true(r.elapsed - e0 >= 0.3 and r.elapsed < 2, "at the error: " .. r.elapsed)
    local w = within(3, c.get, c, "/slow-body?d=0.3")
    assert.is_true(w.elapsed >= 0.28 and w.elapsed < 2, "a whole response: " .. w.elapsed)
  end)
end)

-- The read timeout was measured between the header lines and body pieces
-- curl hands over, not between socket reads: a head dripped one byte at
-- a time, each well within the read timeout, timed out.
describe("corio.http read timeout and a head that drips", function()
  local c
  before_each(function() c = http.client { base_url = base, timeout = { read = 0.3 } } end)
  after_each(function() c:close() end)

  it("bytes of a header line not yet complete keep the read phase alive", function()
    -- 60 bytes, one every 30 ms: 1.8 s, and the status line alone 0.5 s
    local r = within(10, c.get, c, "/drip-head?d=0.03&n=10")
    assert.equal(200, r.status)
    assert.equal("hello", r:text())
    assert.equal("vvvvvvvvvv", r.headers["x-long"])
    -- a stream too (waiting for its headers), on a reused connection
    within(10, c.stream, c, "GET", "/drip-head?d=0.03&n=4", function(s)
      assert.equal("hello", s:read())
    end)
    still_works(c)
  end)

  it("a head that stalls mid-line or between lines still times out (phase read)", function()
    for _, path in ipairs { "/stall-head", "/stall-head?at=lines", "/slow-headers?d=30" } do
      local t0 = corio.now()
      local err = catch(within, 5, c.get, c, path)
      assert.equal("timeout", err.kind, path)
      assert.equal("read", err.phase, path)
      local dt = corio.now() - t0
      assert.is_true(dt >= 0.28 and dt < 2, path .. ": " .. dt)
    end
    local err = catch(within, 5, c.stream, c, "GET", "/stall-head")
    assert.equal("timeout", err.kind)
    assert.equal("read", err.phase)
    still_works(c)
  end)
end)

-- An HTTP/1 stream's read makes its chunks into Lua strings inside curl's
-- write callback; a finaliser that raised (not in a pcall of its own)
-- while one was made unwound through curl's frames, leaving the transfer
-- in a broken state.
describe("corio.http a finaliser that raises while a stream read makes its chunks", function()
  it("the read raises that error after curl returned; no byte is lost; the client works on", function()
    local c_read = require("corio.core").http.read
    local c = http.client { base_url = base }
    local n = 150000
    local want = {}
    for i = 0, n - 1 do want[#want + 1] = i .. "\n" end
    want = table.concat(want)
    local active, raised, elsewhere = false, 0, 0
    -- Garbage whose finaliser raises when it runs inside a stream read
    -- (called from read's C function, or from the protected call it makes
    -- each chunk in); anywhere else it leaves garbage like itself (a
    -- bounded number of times).
    local function arm()
      local p = newproxy(true)
      getmetatable(p).__gc = function()
        if not active then return end
        for level = 2, 3 do
          local info = debug.getinfo(level, "f")
          if info and info.func == c_read then
            raised = raised + 1
            error("raised in __gc", 0)
          end
        end
        elsewhere = elsewhere + 1
        if elsewhere < 2000 then arm() end
      end
    end
    local errs = {}
    -- a stream read to its end, every read that raises tried again
    local function read_all()
      local parts = {}
      local r = c:stream("GET", "/numbers?n=" .. n)
      local it = r:iter_bytes()
      -- a whole cycle of the collector every few allocations; no compiled
      -- code (LuaJIT defers finalisers due in a trace)
      local pause = collectgarbage("setpause", 0)
      local mul = collectgarbage("setstepmul", 100000)
      collectgarbage("restart")  -- step from the next allocation on
      jit.off()
      jit.flush()
      active = true
      arm()
      local ok, err = pcall(function()
        while true do
          local ok, chunk = pcall(it)
          if not ok then
            errs[#errs + 1] = chunk
            arm()
          elseif chunk == nil then
            break
          else
            parts[#parts + 1] = chunk
          end
        end
      end)
      active = false
      jit.on()
      collectgarbage("setpause", pause)
      collectgarbage("setstepmul", mul)
      assert(ok, err)
      return table.concat(parts)
    end
    for _ = 1, 10 do
      local body = within(60, read_all)
      assert.equal(#want, #body)
      assert.is_true(body == want, "the body's bytes differ")
      if raised >= 3 then break end
    end
    assert.is_true(raised >= 3, "too few finalisers ran inside a read (" .. elsewhere .. " elsewhere)")
    assert.equal(raised, #errs)
    for _, e in ipairs(errs) do assert.equal("raised in __gc", e) end
    still_works(c)
    -- and a stream read to its end afterwards
    local r = within(10, c.stream, c, "GET", "/numbers?n=" .. n)
    assert.is_true(within(10, r.read, r) == want)
    c:close()
  end)
end)
