-- httpx_parity_spec.lua: corio.http against the behaviours httpx's own
-- test suite pins down (tests/client/test_client.py's URL merging,
-- test_queryparams, test_headers, test_redirects, test_responses'
-- raise_for_status/iter_lines, basic auth in the URL). Each case either
-- matches httpx or checks the difference SPEC §2 / docs/http.md
-- ("Differences from httpx") states. The mock `transport` stands in for
-- httpx's MockTransport; tests/http/server.py is used where the bytes on
-- the wire matter. Every request to the server runs under a deadline.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch
local http = require("corio.http")

local base, stop_server
setup(function() base, stop_server = helpers.http_server() end)
teardown(function() if stop_server then stop_server() end end)

local within = corio.timeout
local SECS = 10  -- generous: a loaded 2-core machine

-- A mock client: routes[path] = function(req) -> resp; every request is
-- recorded in the returned list.
local function mock(opts, routes)
  local seen = {}
  opts = opts or {}
  opts.transport = function(req)
    seen[#seen + 1] = req
    local path = req.url:match("^%a+://[^/?#]*([^?#]*)")
    local f = routes and routes[path]
    if f then return f(req) end
    return { status = 200, body = req.method == "HEAD" and "" or "Hello, world!" }
  end
  return http.client(opts), seen
end

-- the URL a client with base_url `b` sends for `rel` (and opts)
local function url_for(b, rel, opts)
  local c, seen = mock { base_url = b }
  c:get(rel, opts)
  c:close()
  return seen[1].url
end

describe("httpx parity: URLs and base_url", function()
  it("merges relative URLs as httpx's test_merge_* cases", function()
    assert.equal("https://www.example.com/testing/123",
      url_for("https://www.example.com/", "/testing/123"))
    assert.equal("https://www.example.com/some/path/testing/123",
      url_for("https://www.example.com/some/path", "/testing/123"))
    assert.equal("https://www.example.com/some/path/testing/123",
      url_for("https://www.example.com/some/path/", "testing/123"))
    assert.equal("https://www.example.com/some/testing/123",
      url_for("https://www.example.com/some/path", "../testing/123"))
    assert.equal("https://www.example.com/some/path/testing:123",
      url_for("https://www.example.com/some/path", "/testing:123"))
    assert.equal("https://www.example.com/testing%2F123",
      url_for("https://www.example.com/", "/testing%2F123"))
    assert.equal("https://www.example.com/base%2Fpath/testing",
      url_for("https://www.example.com/base%2Fpath", "/testing"))
  end)

  it("an absolute URL overrides base_url (test_merge_absolute_url)", function()
    assert.equal("http://www.example.com/",
      url_for("https://www.example.com/", "http://www.example.com/"))
    assert.equal("https://other.example.com/path",
      url_for("https://www.example.com/api?token=1", "https://other.example.com/path"))
  end)

  it("keeps a query in base_url, the request's query winning for a key "
    .. "(test_merge_relative_url_with_base_url_query)", function()
    local b = "https://www.example.com/api?token=1"
    assert.equal("https://www.example.com/api/path?token=1&x=2", url_for(b, "path?x=2"))
    assert.equal("https://www.example.com/api/path?token=1", url_for(b, "/path"))
    assert.equal("https://www.example.com/api/path?token=2", url_for(b, "path?token=2"))
    assert.equal("https://www.example.com/api/path?token=1",
      url_for("https://www.example.com/api/?token=1", "path"))
    -- params go after both
    assert.equal("https://www.example.com/api/path?token=1&x=2&y=3",
      url_for(b, "path?x=2", { params = { y = 3 } }))
  end)

  it("base_url's own path is requested for an empty URL, with its query", function()
    assert.equal("https://www.example.com/a", url_for("https://www.example.com/a", ""))
    assert.equal("https://www.example.com/a?k=v", url_for("https://www.example.com/a?k=v", ""))
  end)

  it("percent-encodes non-ASCII bytes of the path (UTF-8), keeps %XX as given", function()
    assert.equal("https://x.org/caf%C3%A9/%41", url_for("https://x.org", "/caf\195\169/%41"))
  end)

  it("refuses whitespace in a URL (an intended difference: httpx quotes it)", function()
    local c = mock {}
    local err = catch(c.get, c, "http://x.org/a b")
    assert.equal("invalid", err.kind)
    assert.matches("whitespace", tostring(err))
    c:close()
  end)

  it("sends no fragment on the wire, and keeps it in r.url", function()
    local c = http.client { base_url = base }
    local r = within(SECS, c.get, c, "/raw-target?a=1#frag")
    assert.equal("/raw-target?a=1", r:text())
    assert.equal(base .. "/raw-target?a=1#frag", r.url)
    r = within(SECS, c.get, c, "/raw-target#frag", { params = { b = 2 } })
    assert.equal("/raw-target?b=2", r:text())
    c:close()
  end)
end)

describe("httpx parity: params", function()
  it("encodes spaces, UTF-8 bytes and reserved characters", function()
    local u = url_for("https://x.org", "/p", { params = {
      q = "a b", u = "caf\195\169", r = "&=?/#+%",
    } })
    -- keys sorted (a Lua table has no order); a space is %20 as in httpx;
    -- "/" is %2F (httpx leaves it as is: the same to a server)
    assert.equal("https://x.org/p?q=a%20b&r=%26%3D%3F%2F%23%2B%25&u=caf%C3%A9", u)
  end)

  it("tostring-s booleans and numbers as httpx's test_queryparam_types", function()
    assert.equal("https://x.org/p?a=true&b=false&c=1.23&d=123&e=",
      url_for("https://x.org", "/p", { params = { a = true, b = false, c = 1.23, d = 123, e = "" } }))
  end)

  it("repeats the key for an array value", function()
    assert.equal("https://x.org/p?a=123&a=456&b=789",
      url_for("https://x.org", "/p", { params = { a = { "123", 456 }, b = 789 } }))
  end)

  it("appends params after a query in the URL (SPEC; httpx replaces the query)", function()
    assert.equal("https://x.org/p?a=1&a=2", url_for("https://x.org", "/p?a=1", { params = { a = 2 } }))
    assert.equal("https://x.org/p?x=2", url_for("https://x.org", "/p?", { params = { x = 2 } }))
  end)

  it("puts params before a fragment", function()
    assert.equal("https://x.org/p?x=2#f", url_for("https://x.org", "/p#f", { params = { x = 2 } }))
  end)

  it("decodes on the server as sent", function()
    local c = http.client { base_url = base }
    local r = within(SECS, c.get, c, "/echo?z=0", { params = { q = "a b&c", u = "caf\195\169", n = { 1, 2 } } })
    local j = r:json()
    assert.same({ "0" }, j.args.z)
    assert.same({ "a b&c" }, j.args.q)
    assert.same({ "1", "2" }, j.args.n)
    -- the server decodes as latin-1 bytes -> python str; compare the raw query
    assert.matches("u=caf%%C3%%A9", j.query)
    c:close()
  end)
end)

describe("httpx parity: request headers", function()
  it("merges client and request headers, the request's winning whatever the case "
    .. "(test_header_merge, test_header_merge_conflicting_headers)", function()
    local c, seen = mock { headers = { ["X-Auth-Token"] = "FooBar", ["User-Agent"] = "python-myclient/0.2.1" } }
    c:get("http://example.org/echo_headers", { headers = { ["x-auth-token"] = "BazToken" } })
    local h = seen[1].headers
    assert.equal("BazToken", h["X-Auth-Token"])
    assert.equal("python-myclient/0.2.1", h["user-agent"])
    c:close()
  end)

  it("sends a default User-Agent corio/<version>", function()
    local c, seen = mock {}
    c:get("http://example.org/")
    assert.equal("corio/" .. corio.version, seen[1].headers["User-Agent"])
    c:close()
  end)

  it("strips white space around a value, refuses CR/LF (nothing sent)", function()
    local c, seen = mock {}
    c:get("http://example.org/", { headers = { X = "  v \t" } })
    assert.equal("v", seen[1].headers.x)
    for _, bad in ipairs { { X = "a\r\nY: b" }, { X = "a\nb" }, { ["X\r\nY"] = "a" } } do
      local err = catch(c.get, c, "http://example.org/", { headers = bad })
      assert.equal("invalid", err.kind)
      assert.matches("http://example.org/", tostring(err), 1, true)
    end
    assert.equal(1, #seen)
    c:close()
  end)

  it("sends Host with a non-default port, without credentials; stripped values on the wire", function()
    local c = http.client {}
    local u = base:gsub("^http://", "http://user:pw@") .. "/echo"
    local j = within(SECS, c.get, c, u, { headers = { ["X-Pad"] = "  padded  " } }):json()
    assert.equal(base:match("^http://(.*)$"), j.headers.host)
    assert.equal("padded", j.headers["x-pad"])
    assert.equal("corio/" .. corio.version, j.headers["user-agent"])
    assert.equal("Basic dXNlcjpwdw==", j.headers.authorization)
    c:close()
  end)

  it("a Host given by the caller is sent; an array value goes out as repeated lines", function()
    local c = http.client { base_url = base }
    local j = within(SECS, c.get, c, "/echo", { headers = { Host = "example.org", X = { "a", "b" } } }):json()
    assert.equal("example.org", j.headers.host)
    assert.equal("a, b", j.headers.x)  -- the server joins the two lines
    c:close()
  end)

  it("a CR/LF in a header never reaches the server", function()
    local c = http.client { base_url = base }
    local err = within(SECS, catch, c.get, c, "/echo", { headers = { X = "a\r\nX-Injected: 1" } })
    assert.equal("invalid", err.kind)
    local j = within(SECS, c.get, c, "/echo"):json()
    assert.is_nil(j.headers["x-injected"])
    c:close()
  end)
end)

describe("httpx parity: response headers", function()
  it("are case-insensitive; repeated ones join with ', ' and get_all lists them", function()
    local c = mock({}, { ["/h"] = function()
      return { headers = { ["Set-Cookie"] = { "a=1", "b=2" }, ["X-Mixed"] = "yes" }, body = "" }
    end })
    local r = c:get("http://example.org/h")
    assert.equal("yes", r.headers["x-mixed"])
    assert.equal("yes", r.headers["X-MIXED"])
    assert.equal("a=1, b=2", r.headers["set-cookie"])
    assert.same({ "a=1", "b=2" }, r:get_all("SET-COOKIE"))
    c:close()
  end)
end)

describe("httpx parity: redirects", function()
  local routes = {
    ["/redirect_301"] = function() return { status = 301, headers = { Location = "https://example.org/" } } end,
    ["/redirect_302"] = function() return { status = 302, headers = { Location = "https://example.org/" } } end,
    ["/redirect_303"] = function() return { status = 303, headers = { Location = "https://example.org/" } } end,
    ["/relative_redirect"] = function() return { status = 303, headers = { Location = "/" } } end,
    ["/no_scheme_redirect"] = function() return { status = 303, headers = { Location = "//example.org/" } } end,
    ["/fragment_redirect"] = function() return { status = 303, headers = { Location = "/x#loc" } } end,
    ["/malformed_redirect"] = function() return { status = 303, headers = { Location = "https://:443/" } } end,
    ["/redirect_custom_scheme"] = function()
      return { status = 301, headers = { Location = "market://details?id=42" } }
    end,
    ["/redirect_loop"] = function() return { status = 303, headers = { Location = "/redirect_loop" } } end,
    ["/multiple_redirects"] = function(req)
      local n = tonumber(req.url:match("count=(%d+)") or "0")
      if n == 0 then return { status = 200, body = "done" } end
      return { status = 303, headers = { Location = "/multiple_redirects"
        .. (n > 1 and "?count=" .. (n - 1) or "") } }
    end,
    ["/cross_domain"] = function()
      return { status = 303, headers = { Location = "https://example.org/cross_domain_target" } }
    end,
    ["/no_location"] = function() return { status = 302, body = "stay" } end,
  }
  local c, seen
  before_each(function() c, seen = mock({ follow_redirects = true }, routes) end)
  after_each(function() c:close() end)

  it("301/302 turn a POST into a GET; 303 a GET; r.url is the final URL", function()
    for _, p in ipairs { "/redirect_301", "/redirect_302", "/redirect_303" } do
      local r = c:post("https://example.org" .. p, { body = "x" })
      assert.equal(200, r.status)
      assert.equal("https://example.org/", r.url)
      assert.equal("GET", seen[#seen].method)
      assert.is_nil(seen[#seen].body)
    end
  end)

  it("follows HEAD as HEAD (test_head_redirect)", function()
    local r = c:head("https://example.org/redirect_302")
    assert.equal(200, r.status)
    assert.equal("https://example.org/", r.url)
    assert.equal("HEAD", seen[#seen].method)
    assert.equal("", r:text())
  end)

  it("resolves relative and scheme-relative Locations", function()
    assert.equal("https://example.org/", c:get("https://example.org/relative_redirect").url)
    assert.equal("https://example.org/", c:get("https://example.org/no_scheme_redirect").url)
    local r = c:get("http://example.org/no_scheme_redirect")
    assert.equal("http://example.org/", r.url)
  end)

  it("a Location without a fragment inherits the request's (test_fragment_redirect)", function()
    local r = c:get("https://example.org/relative_redirect#fragment")
    assert.equal("https://example.org/#fragment", r.url)
    -- a Location's own fragment wins
    r = c:get("https://example.org/fragment_redirect#fragment")
    assert.equal("https://example.org/x#loc", r.url)
  end)

  it("a Location without a host is kind 'redirect' and nothing is sent to it", function()
    local n = #seen
    local err = catch(c.get, c, "http://example.org/malformed_redirect")
    assert.equal("redirect", err.kind)
    assert.matches("https://:443/", tostring(err), 1, true)
    assert.equal(n + 1, #seen)
  end)

  it("a redirect to another scheme is kind 'redirect'", function()
    local err = catch(c.get, c, "https://example.org/redirect_custom_scheme")
    assert.equal("redirect", err.kind)
    assert.matches("market://details", tostring(err), 1, true)
  end)

  it("a redirect error shows a password of the Location as [secure]", function()
    local locs = { ["/r1"] = "ftp://u:pw123@x.org/", ["/r2"] = "http://u:pw123@:1/",
      ["/r3"] = "http://u:pw123@example.org/t" }
    local routes2 = {}
    for p, loc in pairs(locs) do
      routes2[p] = function() return { status = 307, headers = { Location = loc } } end
    end
    local c2 = mock({ follow_redirects = true }, routes2)
    for _, p in ipairs { "/r1", "/r2" } do
      local err = catch(c2.get, c2, "http://example.org" .. p)
      assert.equal("redirect", err.kind)
      assert.matches("u:[secure]@", tostring(err), 1, true)
      assert.is_nil(tostring(err):find("pw123", 1, true))
    end
    -- a 307 of a streamed body names its target the same way
    local err = catch(c2.post, c2, "http://example.org/r3",
      { body = coroutine.wrap(function() coroutine.yield("x") end) })
    assert.equal("redirect", err.kind)
    assert.matches("u:[secure]@", tostring(err), 1, true)
    assert.is_nil(tostring(err):find("pw123", 1, true))
    c2:close()
  end)

  it("follows 20 hops; 21 or a loop are kind 'redirect' (TooManyRedirects)", function()
    local r = c:get("https://example.org/multiple_redirects?count=20")
    assert.equal(200, r.status)
    assert.equal("https://example.org/multiple_redirects", r.url)
    assert.equal("redirect", catch(c.get, c, "https://example.org/multiple_redirects?count=21").kind)
    assert.equal("redirect", catch(c.get, c, "https://example.org/redirect_loop").kind)
  end)

  it("drops Authorization across domains, keeps it on the same domain", function()
    local r = c:get("https://example.com/cross_domain", { headers = { Authorization = "abc" } })
    assert.equal("https://example.org/cross_domain_target", r.url)
    assert.is_nil(seen[#seen].headers.authorization)
    c:get("https://example.org/cross_domain", { headers = { Authorization = "abc" } })
    assert.equal("abc", seen[#seen].headers.authorization)
    -- basic auth from the URL, too
    c:get("https://user:pass@example.com/cross_domain")
    assert.is_nil(seen[#seen].headers.authorization)
  end)

  it("drops Authorization when the scheme or the port changes", function()
    local c2, s2 = mock({ follow_redirects = true }, { ["/r"] = function(req)
      return { status = 302, headers = { Location = req.url:match("to=(.*)$") } }
    end })
    for _, to in ipairs { "https://example.org/t", "http://example.org:8080/t" } do
      c2:get("http://example.org/r?to=" .. to, { headers = { Authorization = "abc" } })
      assert.equal(to, s2[#s2].url)
      assert.is_nil(s2[#s2].headers.authorization)
    end
    c2:get("http://example.org/r?to=http://EXAMPLE.org:80/t", { headers = { Authorization = "abc" } })
    assert.equal("abc", s2[#s2].headers.authorization)
    c2:close()
  end)

  it("a redirect without Location is returned as it is", function()
    local r = c:get("https://example.org/no_location")
    assert.equal(302, r.status)
    assert.equal("stay", r:text())
    assert.equal("https://example.org/no_location", r.url)
  end)

  it("follow_redirects per request overrides the client's (test_disallow_redirects)", function()
    local r = c:post("https://example.org/redirect_303", { follow_redirects = false })
    assert.equal(303, r.status)
    assert.equal("https://example.org/redirect_303", r.url)
    assert.equal("https://example.org/", r.headers.location)
    local c2 = mock({}, routes)
    assert.equal(303, c2:get("https://example.org/redirect_303").status)
    assert.equal(200, c2:get("https://example.org/redirect_303", { follow_redirects = true }).status)
    c2:close()
  end)
end)

describe("httpx parity: redirects on the wire", function()
  local c
  before_each(function() c = http.client { base_url = base, follow_redirects = true } end)
  after_each(function() c:close() end)

  local function to_echo(code)
    return "/redirect-to?code=" .. code .. "&url=" .. http.urlencode("/echo")
  end

  it("303 from a POST: a GET without body, Content-Type or Content-Length "
    .. "(test_no_body_redirect)", function()
    for _, code in ipairs { 301, 302, 303 } do
      local r = within(SECS, c.post, c, to_echo(code), { body = "Example request body",
        headers = { ["Content-Type"] = "text/plain" } })
      local j = r:json()
      assert.equal("GET", j.method)
      assert.equal("", j.body)
      assert.is_nil(j.headers["content-length"])
      assert.is_nil(j.headers["content-type"])
      assert.is_nil(j.headers["transfer-encoding"])
      assert.equal(base .. "/echo", r.url)
    end
  end)

  it("307/308 keep method, body and Content-Length (test_body_redirect)", function()
    for _, code in ipairs { 307, 308 } do
      local r = within(SECS, c.post, c, to_echo(code), { body = "Example request body" })
      local j = r:json()
      assert.equal("POST", j.method)
      assert.equal("Example request body", j.body)
      assert.equal("20", j.headers["content-length"])
    end
  end)

  it("to another origin (127.0.0.1 -> localhost): no Authorization, the new Host "
    .. "(test_cross_domain_redirect_with_auth_header)", function()
    local port = base:match(":(%d+)$")
    local target = "http://localhost:" .. port .. "/echo"
    local r = within(SECS, c.get, c, "/redirect-to?code=302&url=" .. http.urlencode(target),
      { headers = { Authorization = "abc", Host = "custom.example", ["user-agent"] = "mine/1" } })
    local j = r:json()
    assert.equal(target, r.url)
    assert.is_nil(j.headers.authorization)
    assert.equal("localhost:" .. port, j.headers.host)
    assert.equal("mine/1", j.headers["user-agent"])
    -- the same origin keeps them
    j = within(SECS, c.get, c, "/redirect-to?code=302&url=" .. http.urlencode(base .. "/echo"),
      { headers = { Authorization = "abc" } }):json()
    assert.equal("abc", j.headers.authorization)
  end)

  it("HEAD responses have no body", function()
    local r = within(SECS, c.head, c, "/ok")
    assert.equal(200, r.status)
    assert.equal("5", r.headers["content-length"])
    assert.equal("", r:text())
    local n = 0
    for _ in r:iter_lines() do n = n + 1 end
    assert.equal(0, n)
  end)
end)

describe("httpx parity: responses", function()
  local function respond(resp)
    local c = mock({}, { ["/r"] = function() return resp end })
    local r = c:get("https://user:secret@example.org/r")
    c:close()
    return r
  end

  it("raise_for_status raises for 1xx, 3xx, 4xx, 5xx with err.response, not for 2xx", function()
    for _, s in ipairs { 200, 201, 204, 299 } do
      local r = respond { status = s, body = "" }
      assert.equal(r, r:raise_for_status())
    end
    for _, s in ipairs { 101, 199, 300, 303, 403, 404, 500, 599 } do
      local r = respond { status = s, body = "", headers = { Location = "https://other.org" } }
      local err = catch(r.raise_for_status, r)
      assert.equal("status", err.kind)
      assert.equal(s, err.status)
      assert.equal(r, err.response)
      local msg = tostring(err)
      assert.matches("GET https://user:[secure]@example.org/r", msg, 1, true)
      assert.matches("status " .. s, msg, 1, true)
      assert.is_nil(msg:find("secret", 1, true))
    end
  end)

  it("raise_for_status's message has the server's reason phrase", function()
    local c = http.client { base_url = base }
    local r = within(SECS, c.get, c, "/status/404")
    local err = catch(r.raise_for_status, r)
    assert.matches("status 404 Not Found", tostring(err), 1, true)
    c:close()
  end)

  it("text() gives the bytes, whatever the charset (an intended difference)", function()
    local r = respond { headers = { ["Content-Type"] = "text/plain; charset=latin-1" }, body = "caf\233" }
    assert.equal("caf\233", r:text())
    r = respond { headers = { ["Content-Type"] = "text/plain; charset=utf-8" }, body = "caf\195\169" }
    assert.equal("caf\195\169", r:text())
  end)

  it("json() of invalid JSON is kind 'protocol' naming the URL, password hidden", function()
    local r = respond { body = "{nope" }
    local err = catch(r.json, r)
    assert.equal("protocol", err.kind)
    assert.matches("GET https://user:[secure]@example.org/r", tostring(err), 1, true)
    assert.is_nil(tostring(err):find("secret", 1, true))
    assert.same({ a = 1 }, respond({ body = "\239\187\191{\"a\": 1}" }):json())
  end)

  it("iter_lines splits on \\n, \\r\\n and a lone \\r (test_iter_lines, LineDecoder)", function()
    local function lines(body)
      local t = {}
      for l in respond({ body = body }):iter_lines() do t[#t + 1] = l end
      return t
    end
    assert.same({ "Hello,", "world!" }, lines("Hello,\nworld!"))
    assert.same({ "a", "b", "c", "d" }, lines("a\rb\r\nc\nd"))
    assert.same({ "a", "", "b" }, lines("a\n\nb"))
    assert.same({ "a" }, lines("a\r\n"))
    assert.same({}, lines(""))
  end)

  it("iter_lines joins a \\r\\n split over chunks (stream)", function()
    local parts = { "a\r", "\nb\r", "\r", "c\n" }
    local c = mock({}, { ["/r"] = function()
      local i = 0
      return { body = function() i = i + 1; return parts[i] end }
    end })
    local t = {}
    c:stream("GET", "https://example.org/r", nil, function(r)
      for l in r:iter_lines() do t[#t + 1] = l end
    end)
    assert.same({ "a", "b", "", "c" }, t)
    c:close()
  end)

  it("an empty body reads as '' with no lines", function()
    local r = respond { status = 204 }
    assert.equal("", r:text())
    assert.is_nil(r:iter_lines()())
  end)
end)

describe("httpx parity: basic auth in the URL", function()
  it("percent-decodes user and password", function()
    local c, seen = mock {}
    c:get("http://us%40er:p%3Ass%20w@example.org/")
    -- "us@er:p:ss w"
    assert.equal("Basic dXNAZXI6cDpzcyB3", seen[1].headers.authorization)
    c:get("http://username:password@example.org:80/echo_headers")
    assert.equal("Basic dXNlcm5hbWU6cGFzc3dvcmQ=", seen[2].headers.authorization)
    c:close()
  end)

  it("is not leaked in error messages (refused connection, timeout)", function()
    local c = http.client { timeout = 2 }
    -- a closed port: connect error
    local err = within(SECS, catch, c.get, c, "http://bob:hunter2@127.0.0.1:1/x")
    assert.equal("connect", err.kind)
    assert.is_nil(tostring(err):find("hunter2", 1, true))
    assert.matches("bob:[secure]@", tostring(err), 1, true)
    err = within(SECS, catch, c.get, c, base:gsub("^http://", "http://bob:hunter2@")
      .. "/slow-headers?d=3", { timeout = { read = 0.3 } })
    assert.equal("timeout", err.kind)
    assert.is_nil(tostring(err):find("hunter2", 1, true))
    c:close()
  end)
end)

describe("httpx parity: timeouts (test_timeouts)", function()
  it("read timeout: kind timeout, phase read", function()
    local c = http.client { base_url = base, timeout = { read = 0.3 } }
    local err = within(SECS, catch, c.get, c, "/slow-headers?d=3")
    assert.equal("timeout", err.kind)
    assert.equal("read", err.phase)
    c:close()
  end)

  it("write timeout: kind timeout, phase write", function()
    local c = http.client { base_url = base, timeout = { write = 0.3 } }
    local err = within(SECS, catch, c.post, c, "/no-read?d=3", { body = string.rep("u", 64 * 1024 * 1024) })
    assert.equal("timeout", err.kind)
    assert.equal("write", err.phase)
    c:close()
  end)

  it("pool timeout while a stream holds the only connection", function()
    local c = http.client { base_url = base, limits = { max_connections = 1 }, timeout = { pool = 0.3 } }
    within(SECS, c.stream, c, "GET", "/ok", nil, function()
      local err = catch(c.get, c, "/ok")
      assert.equal("timeout", err.kind)
      assert.equal("pool", err.phase)
    end)
    -- the connection is back once the stream is closed
    assert.equal(200, within(SECS, c.get, c, "/ok").status)
    c:close()
  end)
end)
