-- http_hunt3_spec.lua: corio.http behaviours found wrong in a third bug
-- hunt (each test failed before its fix), against tests/http/server.py,
-- compared with what httpx does.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch
local http = require("corio.http")

local base, stop_server

-- a request that must end within secs (a hang fails the test)
local within = corio.timeout

local function still_works(c) helpers.http_still_works(c, 5) end

setup(function() base, stop_server = helpers.http_server() end)
teardown(function() if stop_server then stop_server() end end)

describe("corio.http redirects and the request's headers", function()
  local c, other
  before_each(function()
    c = http.client { base_url = base, follow_redirects = true }
    other = base:gsub("127%.0%.0%.1", "localhost")   -- the same server, another origin
  end)
  after_each(function() c:close() end)

  -- A Cookie header went on to another origin (curl's own redirects
  -- stopped doing that, CVE-2022-27776; httpx drops it), and a Host
  -- header named the first origin's host to the second server (httpx
  -- sets it to the new origin's).
  it("to another origin: Cookie and Host are dropped, as Authorization", function()
    local j = within(5, c.get, c, "/redirect-to?url=" .. http.urlencode(other .. "/echo"),
      { headers = { Cookie = "s=1", Host = "example.org", Authorization = "x", ["X-Keep"] = "k" } }):json()
    assert.is_nil(j.headers.cookie)
    assert.is_nil(j.headers.authorization)
    assert.equal(other:match("//(.*)$"), j.headers.host)
    assert.equal("k", j.headers["x-keep"])
    -- the same origin keeps them
    j = within(5, c.get, c, "/redirect-to?url=/echo",
      { headers = { Cookie = "s=1", Authorization = "x" } }):json()
    assert.equal("s=1", j.headers.cookie)
    assert.equal("x", j.headers.authorization)
    -- and so do the client's default headers
    local c2 = http.client { base_url = base, follow_redirects = true,
      headers = { Cookie = "d=1", Host = "example.org" } }
    j = within(5, c2.get, c2, "/redirect-to?url=" .. http.urlencode(other .. "/echo")):json()
    assert.is_nil(j.headers.cookie)
    assert.equal(other:match("//(.*)$"), j.headers.host)
    c2:close()
  end)

  -- A POST turned into a GET kept a Transfer-Encoding header: curl sent
  -- the GET chunked (httpx drops it with Content-Length).
  it("a request turned into a GET drops Transfer-Encoding with its body", function()
    local j = within(5, c.post, c, "/redirect-to?code=303&url=/echo",
      { body = "abc", headers = { ["Transfer-Encoding"] = "chunked" } }):json()
    assert.equal("GET", j.method)
    assert.equal("", j.body)
    assert.is_nil(j.headers["transfer-encoding"])
    assert.is_nil(j.headers["content-length"])
    still_works(c)
  end)
end)

describe("corio.http params", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  -- "?a=1&" and params gave "a=1&&b=2".
  it("after a query that ends with '&' add no empty pair", function()
    assert.equal("a=1&b=2", within(5, c.get, c, "/echo?a=1&", { params = { b = 2 } }):json().query)
    assert.equal("b=2", within(5, c.get, c, "/echo?", { params = { b = 2 } }):json().query)
    assert.equal("a=1&b=2", within(5, c.get, c, "/echo?a=1", { params = { b = 2 } }):json().query)
  end)
end)

describe("corio.http trailers", function()
  -- The trailer fields of a chunked body were read as headers of a whole
  -- response (curl hands them to the header callback), though not of a
  -- stream's; httpx never shows them.
  it("are not headers of the response", function()
    local c = http.client { base_url = base }
    local r = within(5, c.get, c, "/trailers")
    assert.equal("hello", r:text())
    assert.is_nil(r.headers["x-trailer"])
    assert.equal("X-Trailer", r.headers.trailer)
    local s = within(5, c.stream, c, "GET", "/trailers")
    assert.equal("hello", within(5, s.read, s))
    assert.is_nil(s.headers["x-trailer"])
    still_works(c)
    c:close()
  end)
end)

describe("corio.http json bodies with shared tables", function()
  local c = http.client { transport = function(req) return { body = req.body } end }

  -- Looking for numbers cjson would write with too few digits went down
  -- every path through the tables: {a = t, b = t} with t.a = t took
  -- 2^1000 steps (the loop hung) before cjson could refuse the cycle.
  it("a cycle is refused at once", function()
    local t = {}
    t.a, t.b = t, t
    local t0 = os.clock()
    local err = catch(c.post, c, "http://x/", { json = t })
    assert.equal("invalid", err.kind)
    assert.matches("nesting", err.message)
    assert.is_true(os.clock() - t0 < 1)
  end)

  it("a table met twice is written twice, its big numbers exact", function()
    local s = { n = 123456789012345 }
    local body = c:post("http://x/", { json = { a = s, b = { s, s } } }):text()
    local cjson = require "cjson"
    local j = cjson.decode(body)
    assert.equal(3, select(2, body:gsub("123456789012345", "")))
    assert.equal(123456789012345, j.a.n)
    assert.equal(123456789012345, j.b[2].n)
    assert.equal(123456789012345, s.n)   -- the caller's table as it was
  end)
end)

describe("corio.http header values of white space only", function()
  -- curl takes "Name:" followed by nothing but white space as "remove the
  -- header" (as it did an empty value, fixed before): such a header was
  -- not sent at all. It goes out empty (HTTP trims the white space
  -- around a value anyway).
  it("are sent, empty", function()
    local c = http.client { base_url = base, headers = { ["X-Def-Blank"] = "  " } }
    local j = within(5, c.get, c, "/echo", { headers = { ["X-Blank"] = " \t " } }):json()
    assert.equal("", j.headers["x-blank"])
    assert.equal("", j.headers["x-def-blank"])
    still_works(c)
    c:close()
  end)
end)

describe("corio.http HEAD with a body", function()
  -- libcurl sends a HEAD without the body it was given: the body was
  -- dropped without a word. (httpx's head() takes none either.)
  it("is kind invalid, before anything is sent", function()
    local c = http.client { base_url = base }
    for _, o in ipairs { { body = "x" }, { json = { 1 } }, { form = { a = 1 } } } do
      local err = catch(c.head, c, "/echo", o)
      assert.equal("invalid", err.kind)
      assert.matches("HEAD request cannot send a body", err.message, 1, true)
      err = catch(c.request, c, "head", "/echo", o)
      assert.equal("invalid", err.kind)
    end
    assert.equal(0, c:stats().opened)
    assert.equal(200, within(5, c.head, c, "/echo").status)
    c:close()
  end)
end)

describe("corio.http paths with empty segments", function()
  -- Dot segments were removed with every empty segment too ("a//b"
  -- became "a/b"): a path with "//" (an object key, say) named another
  -- resource. RFC 3986 5.2.4 and httpx keep them.
  it("keep their '//' when joined to base_url and when a redirect is resolved", function()
    assert.equal("http://h/api/files//x", http._join("http://h/api/", "files//x"))
    assert.equal("http://h/a//b", http._join("http://h/", "a//b"))
    assert.equal("http://h/api/a/", http._join("http://h/api/", "a//.."))
    assert.equal("http://h/api/a/b", http._join("http://h/api/", "a//../b"))
    assert.equal("http://h/x", http._join("http://h/api/", "../../x"))
    assert.equal("http://h/api/", http._join("http://h/api/", "."))
    assert.equal("http://h/", http._join("http://h/api", ".."))
    local c = http.client { base_url = "http://h/api/", follow_redirects = true,
      transport = function(req)
        if req.url:find("/start$") then
          return { status = 302, headers = { Location = "../k//v?x=1" } }
        end
        return { status = 200, body = req.url }
      end }
    assert.equal("http://h/api/files//x", c:get("files//x"):text())
    assert.equal("http://h/api/k//v?x=1", c:get("a/start"):text())
  end)
end)
