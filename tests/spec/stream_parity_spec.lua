-- stream_parity_spec.lua: corio.http's streaming API and timeout model
-- checked against httpx's behaviour (facts from its docs and tests), using
-- the fault routes of tests/http/server.py. Every fault case runs under a
-- generous deadline (`within`), so that a hang fails instead of blocking.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local http = require("corio.http")

local catch, clean = helpers.catch, helpers.http_clean
local base, stop_server

local function within(secs, fn, ...) return corio.timeout(secs, fn, ...) end

local function chunks_url(parts, extra)
  local q = {}
  for i, p in ipairs(parts) do
    q[i] = "c=" .. p:gsub("[^%w]", function(ch) return ("%%%02X"):format(ch:byte()) end)
  end
  return "/chunks?" .. table.concat(q, "&") .. (extra or "")
end

local function drain(r)
  local t = {}
  for chunk in r:iter_bytes() do t[#t + 1] = chunk end
  return table.concat(t)
end

setup(function() base, stop_server = helpers.http_server() end)
teardown(function() if stop_server then stop_server() end end)

describe("stream parity: reading", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  it("client:stream returns once the headers came, before the body", function()
    within(10, function()
      local t0 = corio.now()
      local r = c:stream("GET", "/slow-body?d=1.5")
      assert.equal(200, r.status)
      assert.is_true(corio.now() - t0 < 1.2, "stream waited for the body")
      assert.equal("1234567890", drain(r))
    end)
    clean(c)
  end)

  it("the body read to its end by iter_bytes cannot be read again: kind closed", function()
    within(10, function()
      local r = c:stream("GET", "/numbers?n=50")
      assert.is_true(#drain(r) > 0)
      for _, m in ipairs { "text", "json", "iter_bytes", "iter_lines", "read" } do
        local err = catch(r[m], r)
        assert.equal("closed", err.kind, m)
      end
    end)
    clean(c)
  end)

  it("text() and json() after a partial iteration raise kind closed", function()
    within(10, function()
      local r = c:stream("GET", "/json")
      local first = r:iter_bytes()()
      assert.is_true(#first > 0)
      assert.equal("closed", catch(r.text, r).kind)
      assert.equal("closed", catch(r.json, r).kind)
      r:close()
    end)
    clean(c)
  end)

  it("iter_lines: last line without a newline, CRLF split across chunks, empty lines", function()
    within(10, function()
      local lines = {}
      c:stream("GET", chunks_url { "a\r", "\n\r\nb\n", "\n", "last" }, nil, function(r)
        for l in r:iter_lines() do lines[#lines + 1] = l end
      end)
      assert.same({ "a", "", "b", "", "last" }, lines)
    end)
    clean(c)
  end)

  it("iter_lines: a 2 MiB line with no line end is handed out whole", function()
    -- documented: a line is held until its end comes (memory grows with
    -- the line, as in httpx's line decoder)
    within(20, function()
      local r = c:stream("GET", "/bytes/2097152")
      local got = {}
      for l in r:iter_lines() do got[#got + 1] = #l end
      assert.same({ 2097152 }, got)
    end)
    clean(c)
  end)

  it("HEAD with a Content-Length has no body, and the connection is reused", function()
    within(10, function()
      local r = c:head("/bytes/100")
      assert.equal(200, r.status)
      assert.equal("100", r.headers["content-length"])
      assert.equal("", r:text())
      local s = c:stream("HEAD", "/bytes/100")
      assert.equal("", drain(s))
    end)
    clean(c)
    assert.equal(1, c:stats().opened)
  end)

  for _, code in ipairs { 204, 304 } do
    it(code .. " has no body (also with a Content-Length), and the client goes on", function()
      within(10, function()
        local r = c:get("/nobody?code=" .. code)
        assert.equal(code, r.status)
        assert.equal("", r:text())
        local s = c:stream("GET", "/nobody?code=" .. code .. (code == 304 and "&cl=10" or ""))
        assert.equal(code, s.status)
        assert.equal("", drain(s))
      end)
      clean(c)
      assert.equal(1, c:stats().opened)
    end)
  end

  it("gzip: iter_bytes hands over decoded bytes; Content-Length counts the encoded ones", function()
    within(10, function()
      local r = c:stream("GET", "/gzip?n=2000")
      assert.equal("gzip", r.headers["content-encoding"])
      local body = drain(r)
      local want = {}
      for i = 0, 1999 do want[#want + 1] = i .. "\n" end
      assert.equal(table.concat(want), body)
      assert.equal(tostring(#body), r.headers["x-plain-length"])
      assert.is_true(tonumber(r.headers["content-length"]) < #body)
    end)
    clean(c)
  end)
end)

describe("stream parity: the stream form and leftovers", function()
  local c
  before_each(function() c = http.client { base_url = base, limits = { max_connections = 1 } } end)
  after_each(function() c:close() end)

  it("closes the stream when fn returns, raises, or is cancelled", function()
    within(10, function()
      local kept
      c:stream("GET", "/stream?n=100&size=100000", nil, function(r) kept = r; r:iter_bytes()() end)
      assert.equal("closed", catch(kept.read, kept).kind)
      local err = catch(c.stream, c, "GET", "/stream?n=100&size=100000", nil, function(r)
        kept = r
        error({ mine = true })
      end)
      assert.is_true(err.mine)
      assert.equal("closed", catch(kept.read, kept).kind)
      local t = corio.spawn(function()
        c:stream("GET", "/slow-body?d=3", nil, function(r) kept = r; r:read() end)
      end)
      corio.sleep(0.3)
      t:cancel()
      catch(t.join, t)
      assert.equal("closed", catch(kept.read, kept).kind)
      -- one connection allowed: each was given back
      local r = c:get("/ok", { timeout = { pool = 2 } })
      assert.equal("hello", r:text())
    end)
    clean(c)
  end)

  it("a stream held open takes the only connection: pool timeout, freed by close()", function()
    within(10, function()
      local s = c:stream("GET", "/stream?n=100&size=100000")
      local err = catch(c.get, c, "/ok", { timeout = { pool = 0.3 } })
      assert.equal("timeout", err.kind)
      assert.equal("pool", err.phase)
      -- a request waiting for the pool gets the connection when the stream closes
      local t = corio.spawn(function() return c:get("/ok", { timeout = { pool = 5 } }):text() end)
      corio.sleep(0.2)
      s:close()
      assert.equal("hello", t:join())
    end)
    clean(c)
  end)

  it("a stream left open by a task that ended is given back", function()
    within(10, function()
      corio.spawn(function() c:stream("GET", "/stream?n=100&size=100000") end):join()
      local r = c:get("/ok", { timeout = { pool = 2 } })
      assert.equal("hello", r:text())
    end)
    clean(c)
  end)
end)

describe("stream parity: timeouts", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  it("read is the longest gap: a byte every half timeout never times out", function()
    within(15, function()
      local r = c:stream("GET", "/drip?n=8&d=0.2", { timeout = { read = 0.6 } })
      assert.equal("........", drain(r))
    end)
    clean(c)
  end)

  it("a body that stalls times out with phase read; the client goes on", function()
    within(10, function()
      local r = c:stream("GET", "/slow-body?d=5", { timeout = { read = 0.4 } })
      local err = catch(drain, r)
      assert.equal("timeout", err.kind)
      assert.equal("read", err.phase)
      assert.equal("closed", catch(r.read, r).kind)
    end)
    clean(c)
  end)

  it("total bounds the whole stream, body included", function()
    within(10, function()
      local r = c:stream("GET", "/drip?n=40&d=0.1", { timeout = { read = 5, total = 0.8 } })
      local err = catch(drain, r)
      assert.equal("timeout", err.kind)
      assert.equal("total", err.phase)
    end)
    clean(c)
  end)

  it("total counts the consumer's time: a body waiting unread when it fires is not handed over", function()
    -- documented (http.md, "Timeouts of a stream read slowly"); httpx has
    -- no total timeout
    within(10, function()
      local r = c:stream("GET", "/bytes/10", { timeout = { total = 0.3 } })
      corio.sleep(0.8)
      local err = catch(drain, r)
      assert.equal("timeout", err.kind)
      assert.equal("total", err.phase)
      assert.equal("closed", catch(r.read, r).kind)
    end)
    clean(c)
  end)

  it("timeout = 0 turns every phase off, as false does", function()
    within(10, function()
      local c2 = http.client { base_url = base, timeout = 0.2 }
      assert.equal("late", c2:get("/slow-headers?d=0.8", { timeout = 0 }):text())
      c2:close()
    end)
  end)

  it("a request's table overrides the client's timeout phase by phase", function()
    local c2 = http.client { base_url = base, timeout = { read = 0.3, connect = 5 } }
    within(10, function()
      -- connect overridden, read kept from the client
      local err = catch(c2.get, c2, "/slow-headers?d=1.5", { timeout = { connect = 4 } })
      assert.equal("timeout", err.kind)
      assert.equal("read", err.phase)
      -- read overridden
      assert.equal("late", c2:get("/slow-headers?d=0.8", { timeout = { read = 4 } }):text())
      -- false turns every phase off; 0 or false turns one phase off
      assert.equal("late", c2:get("/slow-headers?d=0.8", { timeout = false }):text())
      assert.equal("late", c2:get("/slow-headers?d=0.8", { timeout = { read = 0 } }):text())
      assert.equal("late", c2:get("/slow-headers?d=0.8", { timeout = { read = false } }):text())
    end)
    clean(c2)
    c2:close()
  end)

  it("refused is kind connect, not a timeout", function()
    local err = catch(within, 10, c.get, c, "http://127.0.0.1:1/", { timeout = { connect = 2 } })
    assert.equal("connect", err.kind)
  end)
end)

describe("stream parity: broken bodies", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  it("a truncated chunked body read as a stream is kind protocol; the client goes on", function()
    within(10, function()
      local r = c:stream("GET", "/truncated-chunked", { timeout = { read = 3 } })
      local err = catch(drain, r)
      assert.equal("protocol", err.kind)
    end)
    clean(c)
  end)

  it("a reset mid-body read as a stream is kind network; the client goes on", function()
    within(10, function()
      local r = c:stream("GET", "/reset")
      local err = catch(drain, r)
      assert.equal("network", err.kind)
    end)
    clean(c)
  end)
end)
