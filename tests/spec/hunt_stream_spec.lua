-- hunt_stream_spec.lua: gather/map/first, channels and corio.http
-- streams, used as a hostile user would; the tests under "defect" failed
-- before their fix. HTTP tests run against tests/http/server.py (its
-- /chunks route sends the given parts as separate chunks).

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local http = require("corio.http")

local base, stop_server

-- a request that must end within secs (a hang fails the test)
local within = corio.timeout

-- /chunks?c=..&c=..: each part percent-encoded (any bytes), one chunk each
local function chunks_url(parts, extra)
  local q = {}
  for i, p in ipairs(parts) do
    q[i] = "c=" .. p:gsub("[^%w]", function(ch) return ("%%%02X"):format(ch:byte()) end)
  end
  return "/chunks?" .. table.concat(q, "&") .. (extra or "")
end

-- A client whose transport streams the given chunks.
local function chunked(chunks)
  return http.client { transport = function()
    local i = 0
    return { status = 200, body = function() i = i + 1; return chunks[i] end }
  end }
end

local function all_lines(it)
  local out = {}
  for l in it do out[#out + 1] = l end
  return out
end

setup(function() base, stop_server = helpers.http_server() end)
teardown(function() if stop_server then stop_server() end end)

describe("defect: a stream's lines held by an iter_lines loop that was left", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  -- Before: each iter_lines() made a new line splitter; the lines it had
  -- split from a chunk but not yet handed out, and a line not ended yet,
  -- were lost when a loop broke out and a second loop went on.
  it("are handed out by the next iter_lines loop", function()
    local r = within(5, c.stream, c, "GET", chunks_url({ "a\nb\nc", "d\ne\n" }))
    local got = {}
    for l in r:iter_lines() do got[#got + 1] = l; break end
    within(5, function()
      for l in r:iter_lines() do got[#got + 1] = l end
    end)
    assert.same({ "a", "b", "cd", "e" }, got)
  end)

  it("through a transport too", function()
    local r = chunked({ "x\ny\nz", "z\n", "w" }):stream("GET", "http://t/")
    local got = {}
    for l in r:iter_lines() do got[#got + 1] = l; break end
    for l in r:iter_lines() do got[#got + 1] = l; break end
    for l in r:iter_lines() do got[#got + 1] = l end
    assert.same({ "x", "y", "zz", "w" }, got)
  end)

  -- Before: iter_bytes (and read) went on after the bytes the line
  -- splitter held, so "b\nc" was lost.
  it("come first, as bytes, from iter_bytes and read", function()
    local r = within(5, c.stream, c, "GET", chunks_url({ "a\nb\nc", "d\ne\n" }))
    for _ in r:iter_lines() do break end
    assert.equal("b\ncd\ne\n", within(5, r.read, r))
    -- a CR that ended a chunk: the LF that follows in the next chunk
    -- belonged to that line end, and is not handed out as a byte
    local r2 = within(5, c.stream, c, "GET", chunks_url({ "a\r", "\nb\n" }))
    local it = r2:iter_lines()
    assert.equal("a", within(5, it))
    local bytes = {}
    within(5, function() for b in r2:iter_bytes() do bytes[#bytes + 1] = b end end)
    assert.equal("b\n", table.concat(bytes))
  end)

  it("over a whole body mixed with iter_bytes, every byte arrives once", function()
    local N = 3000
    local r = within(5, c.stream, c, "GET", "/numbers?n=" .. N)
    local text = {}
    local k = 0
    within(20, function()
      while true do
        k = k + 1
        local got
        if k % 2 == 1 then
          for l in r:iter_lines() do text[#text + 1] = l .. "\n"; got = true; break end
        else
          for b in r:iter_bytes() do text[#text + 1] = b; got = true; break end
        end
        if not got then break end
      end
    end)
    local want = {}
    for i = 0, N - 1 do want[#want + 1] = i .. "\n" end
    assert.is_true(table.concat(text) == table.concat(want), "bytes lost or repeated")
  end)
end)

describe("defect: text() and json() of a stream partly read", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  -- Before: text() returned the rest of the body as if it were all of
  -- it, and json() failed with a misleading "not valid JSON" (kind
  -- protocol). httpx raises StreamConsumed; corio raises kind "closed".
  it("raise kind closed saying the body was partly consumed", function()
    local r = within(5, c.stream, c, "GET", chunks_url({ '{"a":', "1}" }, "&d=0.2"))
    local it = r:iter_bytes()
    assert.equal('{"a":', within(5, it))
    for _, m in ipairs { "text", "json" } do
      local ok, e = pcall(r[m], r)
      assert.is_false(ok)
      assert.equal("closed", e.kind, tostring(e))
      assert.matches("partly consumed", e.message)
      assert.matches("GET " .. base .. "/chunks", e.message, 1, true)
    end
    -- read() is "the rest of the body", as a file's read("a") is
    assert.equal("1}", within(5, r.read, r))
    local ok, e = pcall(r.text, r)
    assert.is_false(ok)
    assert.equal("closed", e.kind)
  end)

  it("an untouched stream gives its whole body, and again after read()", function()
    local r = within(5, c.stream, c, "GET", chunks_url({ '{"a":', "1}" }))
    assert.same({ a = 1 }, within(5, r.json, r))
    assert.equal('{"a":1}', r:text())
    assert.equal('{"a":1}', r:read())
    -- as httpx iterates a read response's content
    assert.same({ '{"a":1}' }, all_lines(r:iter_lines()))
    assert.equal('{"a":1}', r:iter_bytes()())
  end)
end)

describe("defect: a cancelled stream read", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  -- Before: the Lua layer closed the stream on any failed read, the
  -- Cancelled of a timeout or task:cancel() included, although runtime/
  -- http.c keeps the transfer for this (a cancelled read is undone and
  -- loses nothing, rule 7): the next read said "the stream is closed".
  it("leaves the stream open; the next read goes on and loses nothing", function()
    local r = within(5, c.stream, c, "GET", "/drip?n=20&d=0.01")
    local got = {}
    local ok = corio.move_on_after(0.05, function()
      for b in r:iter_bytes() do got[#got + 1] = b end
    end)
    assert.is_false(ok)
    within(5, function() for b in r:iter_bytes() do got[#got + 1] = b end end)
    assert.equal(("."):rep(20), table.concat(got))
    assert.equal(0, c:stats().in_flight)
  end)

  it("of iter_lines, by task:cancel(), keeps the line being read", function()
    local r = within(5, c.stream, c, "GET", chunks_url({ "ab", "cd", "ef\ng\n" }, "&d=0.1"))
    local it = r:iter_lines()
    local t = corio.spawn(function() return it() end)
    corio.sleep(0.05)
    t:cancel()
    local ok, e = pcall(t.join, t)
    assert.is_false(ok)
    assert.is_true(corio.is_cancelled(e))
    assert.same({ "abcdef", "g" }, within(5, all_lines, r:iter_lines()))
  end)

  it("of read() keeps what it got: the next read() and text() give the whole body", function()
    local r = within(5, c.stream, c, "GET", "/drip?n=20&d=0.01")
    assert.is_false(corio.move_on_after(0.05, r.read, r))
    assert.equal(("."):rep(20), within(5, r.read, r))
    assert.equal(("."):rep(20), r:text())
    -- and a line split between a cancelled read() and iter_lines
    local r2 = within(5, c.stream, c, "GET", chunks_url({ "ab", "c\nd" }, "&d=0.2"))
    assert.is_false(corio.move_on_after(0.1, r2.read, r2))
    assert.same({ "abc", "d" }, within(5, all_lines, r2:iter_lines()))
  end)

  it("the stream form still closes the stream when its function is cancelled", function()
    local ok = corio.move_on_after(0.05, function()
      c:stream("GET", "/drip?n=20&d=0.01", function(r) for _ in r:iter_bytes() do end end)
    end)
    assert.is_false(ok)
    assert.equal(0, c:stats().in_flight)
    assert.equal(200, within(5, c.get, c, "/ok").status)
  end)
end)

describe("streams: checked sound", function()
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  it("lines over chunk boundaries: CRLF split, lone CR, empty lines, binary, no last LF", function()
    local cases = {
      { { "a\r", "\nb\r", "\n", "c" }, { "a", "b", "c" } },
      { { "a\rb\r", "c", "\r", "\r", "d" }, { "a", "b", "c", "", "d" } },
      { { "\n\n", "\r\n\r\n", "x\n" }, { "", "", "", "", "x" } },
      { { "\0\1\255\n\0", "z" }, { "\0\1\255", "\0z" } },
    }
    for _, case in ipairs(cases) do
      local r = within(5, c.stream, c, "GET", chunks_url(case[1], "&d=0.005"))
      assert.same(case[2], within(5, all_lines, r:iter_lines()))
    end
  end)

  it("a very long line split over many chunks", function()
    local big = ("x"):rep(100000)
    local r = chunked({ big, big, "\n", big }):stream("GET", "http://t/")
    local got = all_lines(r:iter_lines())
    assert.equal(2, #got)
    assert.equal(200000, #got[1])
    assert.equal(100000, #got[2])
  end)

  it("leaving a loop early and closing discards the connection; a read-out one is reused", function()
    local r = within(5, c.stream, c, "GET", "/stream?n=200&size=10000")
    for _ in r:iter_bytes() do break end
    r:close()
    local s = c:stats()
    assert.same({ 1, 0, 0, 0 }, { s.opened, s.reused, s.idle, s.in_flight })
    local ok, e = pcall(r.read, r)
    assert.is_false(ok)
    assert.equal("closed", e.kind)
    within(5, c.get, c, "/ok")
    local r2 = within(5, c.stream, c, "GET", chunks_url({ "a\n", "b\n" }))
    assert.same({ "a", "b" }, within(5, all_lines, r2:iter_lines()))
    within(5, c.get, c, "/ok")
    s = c:stats()
    assert.same({ 2, 2, 1, 0 }, { s.opened, s.reused, s.idle, s.in_flight })
  end)

  it("raise_for_status on a stream keeps it readable", function()
    local r = within(5, c.stream, c, "GET", chunks_url({ "oops\n" }, "&status=404"))
    local ok, e = pcall(r.raise_for_status, r)
    assert.is_false(ok)
    assert.equal("status", e.kind)
    assert.equal(404, e.status)
    assert.equal(r, e.response)
    assert.equal("oops\n", within(5, r.text, r))
  end)
end)

describe("channels: checked sound", function()
  it("iter ends when another task closes; false is a value", function()
    local ch = corio.channel(2)
    local got = {}
    within(5, corio.scope, function(s)
      s:spawn(function() for v in ch:iter() do got[#got + 1] = tostring(v) end end)
      s:spawn(function() ch:send(1); ch:send(false); ch:send(3); ch:close() end)
    end)
    assert.same({ "1", "false", "3" }, got)
  end)

  it("close wakes blocked senders with kind closed and receivers with nil, closed", function()
    local ch = corio.channel(0)
    local out = {}
    within(5, corio.scope, function(s)
      for i = 1, 2 do
        s:spawn(function()
          local ok, e = pcall(ch.send, ch, i)
          out[#out + 1] = tostring(ok) .. ":" .. e.kind
        end)
      end
      corio.sleep(0)
      ch:close()
    end)
    assert.same({ "false:closed", "false:closed" }, out)
    local ch2 = corio.channel(0)
    within(5, corio.scope, function(s)
      s:spawn(function() out[#out + 1] = { ch2:recv() } end)
      corio.sleep(0)
      ch2:close()
    end)
    assert.same({ nil, "closed" }, out[3])
  end)

  it("a rendezvous sender cancelled after a try_recv took its value still succeeds", function()
    local ch = corio.channel(0)
    local res
    within(5, corio.scope, function(s)
      local snd = s:spawn(function() res = { pcall(ch.send, ch, "v") } end)
      corio.sleep(0)
      assert.same({ true, "v" }, { ch:try_recv() })
      snd:cancel()
    end)
    assert.same({ true }, res)
  end)

  it("a rendezvous send in a cancelled scope raises at entry and delivers nothing", function()
    local ch = corio.channel(0)
    local got
    within(5, corio.scope, function(s)
      s:spawn(function() got = ch:recv() end)
      corio.sleep(0)                 -- the receiver waits
      corio.scope(function(inner)
        inner:cancel()
        local ok, e = pcall(ch.send, ch, "lost")
        assert.is_false(ok)
        assert.is_true(corio.is_cancelled(e))
      end)
      assert.is_nil(got)
      ch:send("kept")
    end)
    assert.equal("kept", got)
  end)

  it("a cancelled rendezvous receiver takes nothing", function()
    local ch = corio.channel(0)
    within(5, corio.scope, function(s)
      local rcv = s:spawn(function() ch:recv() end)
      corio.sleep(0)
      rcv:cancel()
      assert.is_false(ch:try_send("v"))
    end)
  end)
end)

describe("gather, map and first: checked sound", function()
  it("map keeps order and holes, with limit 1, limit above #items and math.huge", function()
    for _, limit in ipairs { 1, 2, 100, math.huge } do
      local r = within(5, corio.map, { 3, 1, 2, 4 }, function(x)
        corio.sleep(x * 0.001)
        if x ~= 2 then return x * 10 end
      end, { limit = limit })
      assert.same({ 30, 10, nil, 40 }, r)
    end
  end)

  it("map cancelled from outside mid-way: what started is cleaned up, nothing starts after", function()
    local started, cleaned = {}, {}
    local ok = corio.move_on_after(0.025, function()
      corio.map({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, function(x)
        started[#started + 1] = x
        corio.defer(function() cleaned[#cleaned + 1] = x end)
        corio.sleep(0.01)
      end, { limit = 2 })
    end)
    assert.is_false(ok)
    assert.is_true(#started < 10)
    table.sort(cleaned)
    assert.same(started, cleaned)
  end)

  it("first: a winner that returns nil; the losers' cleanup runs before it returns", function()
    local log = {}
    local v, i = within(5, corio.first, {
      function() corio.sleep(0.01); return 1 end,
      function()
        corio.defer(function()
          corio.shield(function() corio.sleep(0.01) end)
          log[#log + 1] = "cleaned"
        end)
        corio.sleep(10)
      end,
      function() return nil end,
    })
    assert.is_nil(v)
    assert.equal(3, i)
    assert.same({ "cleaned" }, log)
  end)
end)

describe("defect: an iter_lines iterator kept past close()", function()
  -- Before: it still handed out the lines it had split from a chunk
  -- before close(); reading a stream after close() raises kind closed.
  it("raises kind closed", function()
    local c = http.client { base_url = base }
    local r = within(5, c.stream, c, "GET", chunks_url({ "a\nb\nc\n" }))
    local it = r:iter_lines()
    assert.equal("a", within(5, it))
    r:close()
    local ok, e = pcall(it)
    assert.is_false(ok)
    assert.equal("closed", e.kind, tostring(e))
    c:close()
  end)
end)

describe("defect: streams left without close() and no longer reachable", function()
  -- Before: each held its connection until the collector happened to run,
  -- so with max_connections taken the next requests waited for the pool
  -- and failed with a pool timeout (CPython's httpx frees such a response
  -- at once). Now a request that finds every connection taken while
  -- streams were opened runs the collector first.
  it("give their connections back to a request that would wait for the pool", function()
    local c = http.client { base_url = base, limits = { max_connections = 2 },
                            timeout = { connect = 2, read = 2, write = 2, pool = 0.5 } }
    for i = 1, 6 do
      -- a loop left early, the stream forgotten (its task cancelled, or
      -- simply out of scope)
      local t = corio.spawn(function()
        local r = c:stream("GET", "/stream?n=200&size=10000")
        for _ in r:iter_bytes() do break end
        corio.sleep(10)
      end)
      corio.sleep(0.01)
      t:cancel()
      pcall(t.join, t)
      local ok, e = pcall(within, 5, c.get, c, "/ok")
      assert.is_true(ok, "request " .. i .. ": " .. tostring(e))
    end
    assert.is_true(c:stats().in_flight <= 2)
    c:close()
  end)
end)

describe("a second task reading while an iter_lines loop waits", function()
  it("is refused, and the waiting loop keeps the line it was reading", function()
    local c = http.client { base_url = base }
    local r = within(5, c.stream, c, "GET", chunks_url({ "ab", "cd\n", "e\n" }, "&d=0.1"))
    local a = corio.spawn(function() return all_lines(r:iter_lines()) end)
    corio.sleep(0.05)  -- a holds "ab" and waits for the next chunk
    local ok, e = pcall(r.read, r)
    assert.is_false(ok)
    assert.equal("invalid", e.kind, tostring(e))
    assert.same({ "abcd", "e" }, within(5, a.join, a))
    c:close()
  end)
end)

describe("defect: a transport's body iterator", function()
  -- Before: iter_bytes handed out its empty chunks (httpx hands out none),
  -- and a chunk of another type went through raw: iter_bytes gave the
  -- table, iter_lines failed inside string.find, a whole response inside
  -- table.concat. A reply of another shape is kind
  -- protocol (api.md).
  it("gives no empty chunks", function()
    local r = chunked({ "", "a", "", "", "b", "" }):stream("GET", "http://t/")
    local got = {}
    for b in r:iter_bytes() do got[#got + 1] = b end
    assert.same({ "a", "b" }, got)
  end)

  it("that gives a chunk other than a string (or a number, as body may be) is kind protocol", function()
    assert.equal("a\n42", chunked({ "a\n", 42 }):get("http://t/"):text())
    assert.same({ "a", "42" }, all_lines(chunked({ "a\n", 42 }):stream("GET", "http://t/"):iter_lines()))
    for _, bad in ipairs { {}, true } do
      local r = chunked({ "a\n", bad }):stream("GET", "http://t/")
      local it = r:iter_lines()
      assert.equal("a", it())
      local ok, e = pcall(it)
      assert.is_false(ok)
      assert.equal("protocol", e.kind, tostring(e))
      assert.matches("GET http://t/", e.message, 1, true)
      assert.matches("transport", e.message)
      local ok2, e2 = pcall(chunked({ "a", bad }).get, chunked({ "a", bad }), "http://t/")
      assert.is_false(ok2)
      assert.equal("protocol", e2.kind, tostring(e2))
    end
  end)

  -- Before: the empty chunks were skipped in a loop that never reached
  -- the scheduler, so an iterator that gives "" until another task acts
  -- spun for ever (here: until its bound, then the test failed), and a
  -- deadline could not end the read. Each "" skipped is now a checkpoint.
  local function waiting(flag, bound)
    local calls = 0
    return http.client { transport = function()
      return { status = 200, body = function()
        if flag.done then return nil end
        calls = calls + 1
        if calls > bound then error("spun " .. bound .. " times: no other task ran", 0) end
        if flag.set then flag.done = true; return "go" end
        return ""
      end }
    end }, function() return calls end
  end

  for _, form in ipairs { "stream", "get" } do
    it("that gives \"\" until another task acts lets that task run (" .. form .. ")", function()
      local flag = {}
      local c = waiting(flag, 100000)
      local setter = corio.spawn(function() corio.yield(); flag.set = true end)
      if form == "stream" then
        local got = {}
        for b in c:stream("GET", "http://t/"):iter_bytes() do got[#got + 1] = b end
        assert.same({ "go" }, got)
      else
        assert.equal("go", c:get("http://t/"):text())
      end
      setter:join()
    end)
  end

  it("that gives \"\" for ever is ended by a deadline", function()
    local c, calls = waiting({}, 1e7)
    local r = c:stream("GET", "http://t/")
    local t0 = corio.now()
    local ok, e = pcall(corio.timeout, 0.05, function()
      for _ in r:iter_bytes() do end
    end)
    assert.is_false(ok)
    assert.is_true(corio.is_error(e, "timeout"), tostring(e))
    assert.is_true(corio.now() - t0 < 2)
    assert.is_true(calls() > 0)
  end)
end)

describe("defect: gather or first of a Task the call runs inside", function()
  -- Before: the gather's child joined the task that waits for that very
  -- child: a deadlock, reported only once nothing else (a timer, a
  -- socket) kept the loop alive, and a hang until then.
  it("raises at once instead of waiting forever", function()
    local me = corio.current()
    local keep = corio.spawn(corio.sleep, 0.5)  -- keeps the loop alive
    local ok, e = pcall(within, 2, corio.gather, { me })
    assert.is_false(ok)
    assert.matches("cannot join a task it runs inside", tostring(e))
    local r, errs = within(2, corio.gather, { me, function() return 1 end }, { return_errors = true })
    assert.equal(1, r[2])
    assert.matches("cannot join a task it runs inside", errs[1].message)
    -- a grandchild joining its grandparent
    local ok2, e2 = pcall(within, 2, function()
      return corio.spawn(function()
        return corio.spawn(function() return me:join() end):join()
      end):join()
    end)
    assert.is_false(ok2)
    assert.matches("cannot join a task it runs inside", tostring(e2))
    keep:cancel()
  end)
end)

describe("defect: ch.iter() called without its channel", function()
  -- Before: it returned an iterator anyway, and the first step raised
  -- "bad self to 'recv'", naming a method the user did not call.
  it("raises bad self to 'iter' at once", function()
    local ch = corio.channel(1)
    for _, bad in ipairs { false, 5, {} } do
      local ok, e = pcall(ch.iter, bad or nil)
      assert.is_false(ok)
      assert.matches("bad self to 'iter' %(corio.Channel expected, got " .. type(bad or nil), e)
    end
    ch:send(1)
    ch:close()
    local got = {}
    for v in ch:iter() do got[#got + 1] = v end
    assert.same({ 1 }, got)
  end)
end)

describe("defect: an error raised in the stream form's function", function()
  -- Before: it was caught with pcall and raised again, so its traceback
  -- was that of the re-raise inside corio.http, not where fn raised it
  -- (rule 9).
  it("keeps the traceback of where it was raised", function()
    local c = http.client { base_url = base }
    local function deep_in_fn() error("boom") end
    local line = debug.getinfo(deep_in_fn, "S").linedefined
    local _, errs = within(5, corio.gather, { function()
      c:stream("GET", "/ok", function() deep_in_fn(); return 1 end)
    end }, { return_errors = true })
    local e = errs[1]
    assert.equal("error", e.kind)
    assert.matches("boom", e.message)
    assert.matches("hunt_stream_spec.lua:" .. line, e.traceback, 1, true)
    assert.equal(0, c:stats().in_flight)
    c:close()
  end)
end)

describe("defect: a plain error from a scope nested in a gather function or another body", function()
  -- Before: the enclosing body's handler noted the scope's re-raise
  -- inside init.lua as where the error came from, so the traceback of
  -- errors[i] (and of a task that ended with it) lost the raising line.
  it("keeps the traceback of where it was raised", function()
    local function raiser() local x = nil; return x.field end
    local line = debug.getinfo(raiser, "S").linedefined
    local _, errs = within(5, corio.gather, {
      function() corio.scope(function() raiser() end) end,
      function() corio.timeout(5, function() corio.scope(function() raiser() end) end) end,
      function() return corio.map({ 1 }, function() corio.move_on_after(5, raiser) end, { limit = 1 }) end,
    }, { return_errors = true })
    for i = 1, 3 do
      assert.equal("error", errs[i].kind)
      assert.matches("hunt_stream_spec.lua:" .. line, errs[i].traceback, 1, true)
    end
  end)
end)
