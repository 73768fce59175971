-- http_upload_hunt_spec.lua: streamed request bodies at their edges (the
-- pool, odd iterators, re-entrancy, cancellation, files, redirects,
-- the module-level functions), against tests/http/upload_server.py. Every
-- case runs under a deadline: a hang fails instead of stalling.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch
local http = require("corio.http")
local fs = require("corio.fs")
local cb = require("corio.busted")

local base, stop_server
local within = corio.timeout

setup(function() base, stop_server = helpers.http_server(nil, nil, "upload_server.py") end)
teardown(function() if stop_server then stop_server() end end)

local chunks = helpers.letter_chunks

local function want_of(n, size)
  local t = {}
  for chunk in chunks(n, size) do t[#t + 1] = chunk end
  return table.concat(t)
end

local function sha(c, s)
  return within(10, c.post, c, "/sha", { body = s }):text()
end

local clean = helpers.http_clean

describe("corio.http streamed request bodies: the hunt", function()
  cb.timeout(60)
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  it("more uploads than max_connections: the rest wait for the pool", function()
    local p = http.client { base_url = base, limits = { max_connections = 2 } }
    local tasks, res = {}, {}
    for k = 1, 8 do
      tasks[k] = corio.spawn(function()
        local i = 0
        local r = p:post("/slow-sum?d=0.001", { body = function()
          i = i + 1
          if i > 20 then return nil end
          if i % 3 == 0 then corio.sleep(0.001) end
          return string.rep(string.char(96 + k), 10000 + k)
        end })
        res[k] = r:json()
      end)
    end
    within(30, function() for k = 1, 8 do tasks[k]:join() end end)
    for k = 1, 8 do
      assert.equal(20 * (10000 + k), res[k].n)
      assert.is_true(res[k].chunked)
    end
    local st = p:stats()
    assert.equal(0, st.in_flight)
    assert.is_true(st.opened <= 2, "opened " .. st.opened)
    p:close()
  end)

  it("empty chunks are skipped, extra return values ignored", function()
    local i = 0
    local r = within(5, c.post, c, "/sum", { body = function()
      i = i + 1
      if i > 6 then return nil, "extra" end
      if i % 2 == 1 then return "", 1, 2 end
      return "abc", "more", {}
    end })
    assert.equal(9, r:json().n)
    -- only empty chunks: an empty body
    local j = within(5, c.post, c, "/sum", { body = function()
      i = i + 1
      if i < 12 then return "" end
    end }):json()
    assert.equal(0, j.n)
    clean(c)
  end)

  it("an iterator that polls, giving \"\" while it has nothing, lets the loop run", function()
    -- another task fills buf; the iterator gives "" until it has data
    local buf, done, t0 = {}, false, os.clock()
    local producer = corio.spawn(function()
      for k = 1, 4 do
        corio.sleep(0.005)
        buf[#buf + 1] = "part" .. k
      end
      done = true
    end)
    local r = within(5, c.post, c, "/echo", { body = function()
      -- (bounded: it spun, starving the producer, with no checkpoint)
      if os.clock() - t0 > 2 then return nil end
      if #buf > 0 then return table.remove(buf, 1) end
      if done then return nil end
      return ""
    end })
    producer:join()
    assert.equal("part1part2part3part4", r:json().body)
    -- and a deadline fires while it spins
    local n = 0
    local ok = corio.move_on_after(0.05, c.post, c, "/sum", { body = function()
      n = n + 1
      if n > 1e7 then return nil end
      return ""
    end })
    assert.is_false(ok)
    assert.is_true(n < 1e7)
    clean(c)
  end)

  it("a 64 MiB chunk in one string", function()
    local big = string.rep("0123456789abcdef", 4 * 1024 * 1024)
    local want = sha(c, big)
    local gave = false
    local r = within(30, c.post, c, "/sha", { body = function()
      if gave then return nil end
      gave = true
      return big
    end })
    assert.equal(want, r:text())
    big = nil
    clean(c)
  end)

  it("a chunk of a table, a boolean; an error that is a table", function()
    for _, v in ipairs { {}, true, 1.5 } do
      local err = catch(within, 5, c.post, c, "/sum", { body = function() return v end })
      assert.equal("invalid", err.kind)
      assert.matches("the body iterator gave a " .. type(v), err.message)
      clean(c)
    end
    local e = { code = 7 }
    local err = catch(within, 5, c.post, c, "/sum", { body = function() error(e) end })
    assert.equal(e, err)
    local n = 0
    err = catch(within, 5, c.post, c, "/sum", { body = function()
      n = n + 1
      if n > 3 then error(e) end
      return "x"
    end })
    assert.equal(e, err)
    clean(c)
  end)

  it("the iterator makes another request on the same client", function()
    local i = 0
    local inner = {}
    local r = within(10, c.post, c, "/sum", { body = function()
      i = i + 1
      if i > 3 then return nil end
      inner[#inner + 1] = c:get("/ok").status
      return "abc"
    end })
    assert.equal(9, r:json().n)
    assert.same({ 200, 200, 200 }, inner)
    -- and a nested upload from the iterator
    i = 0
    r = within(10, c.post, c, "/sum", { body = function()
      i = i + 1
      if i > 2 then return nil end
      return c:post("/sum", { body = chunks(2, 5) }):text()
    end })
    assert.equal(200, r.status)
    clean(c)
  end)

  it("from the iterator, with max_connections 1: the pool timeout", function()
    local p = http.client { base_url = base, limits = { max_connections = 1 },
      timeout = { pool = 0.2 } }
    local n = 0
    local err = catch(within, 5, p.post, p, "/sum", { body = function()
      n = n + 1
      if n == 1 then return "a" end  -- pulled before the request starts
      return p:get("/ok"):text()
    end })
    assert.same({ "timeout", "pool" }, { err.kind, err.phase })
    assert.equal(0, p:stats().in_flight)
    helpers.http_still_works(p, 5)
    p:close()
  end)

  it("a stream upload whose response is dropped unread gives its connection back", function()
    local p = http.client { base_url = base, limits = { max_connections = 1 },
      timeout = { pool = 2 } }
    for k = 1, 4 do
      local r = within(5, p.stream, p, "POST", "/stream?n=2000&size=1000",
        { body = chunks(k, 100) })
      assert.equal(200, r.status)
      r = nil  -- dropped mid-body: the next request's collection closes it
    end
    assert.equal(200, within(5, p.get, p, "/ok").status)
    assert.equal(0, p:stats().in_flight)
    p:close()
  end)

  it("a coroutine.wrap generator that blocks inside it", function()
    local gen = coroutine.wrap(function()
      for k = 1, 5 do
        corio.sleep(0.001)
        coroutine.yield(string.rep("g", k))
      end
    end)
    local r = within(5, c.post, c, "/sum", { body = gen })
    assert.equal(15, r:json().n)
    clean(c)
  end)

  it("cancelled from another task while the iterator waits on a channel", function()
    within(5, c.get, c, "/ok")
    assert.same({ 1, 1 }, { c:stats().idle, c:stats().opened })
    local ch = corio.channel()
    local task = corio.spawn(c.post, c, "/sum", { body = ch:iter() })
    ch:send("first")
    corio.sleep(0.05)
    assert.equal(1, c:stats().in_flight)
    task:cancel()
    -- rule 7: the transfer is removed by cancel() itself, not when the
    -- task next runs
    assert.equal(0, c:stats().in_flight)
    -- its connection, with half a body sent, is closed, not kept idle
    assert.equal(0, c:stats().idle)
    local ok, err = pcall(task.join, task)
    assert.is_false(ok)
    assert.is_true(corio.is_cancelled(err))
    clean(c)
    assert.equal(2, c:stats().opened)
    -- the channel still works
    local got
    local t2 = corio.spawn(function() got = ch:recv() end)
    ch:send("after")
    t2:join()
    assert.equal("after", got)
  end)

  it("an upload left in a coroutine.wrap that yielded from its iterator: the cancel removes it", function()
    local n = 0
    local task = corio.spawn(function()
      local gen = coroutine.wrap(function()
        return c:post("/sum", { body = function()
          n = n + 1
          if n > 3 then return nil end
          coroutine.yield("step" .. n)
          return "abc"
        end })
      end)
      assert.equal("step1", gen())
      assert.equal("step2", gen())  -- the transfer is in curl now
      corio.sleep(5)
    end)
    corio.sleep(0.05)
    assert.equal(1, c:stats().in_flight)
    task:cancel()
    -- the request was made in the task's scope, now cancelled; the wrap
    -- is never resumed (before: in flight until its box was collected)
    assert.equal(0, c:stats().in_flight)
    local ok, err = pcall(task.join, task)
    assert.is_true(not ok and corio.is_cancelled(err))
    clean(c)
  end)

  it("cancelled while the iterator runs in a shield: removed once it returns", function()
    local n, inside = 0, false
    local task = corio.spawn(c.post, c, "/sum", { body = function()
      n = n + 1
      if n == 1 then return "first" end
      if n > 2 then return nil end
      inside = true
      corio.shield(corio.sleep, 0.1)
      return "late"
    end })
    while not inside do corio.sleep(0.001) end
    task:cancel()
    -- the shield keeps the outer cancel off the iterator, and the transfer
    assert.equal(1, c:stats().in_flight)
    local ok, err = pcall(within, 5, task.join, task)
    assert.is_false(ok)
    assert.is_true(corio.is_cancelled(err))
    assert.equal(2, n)  -- not pulled again: feeding "late" raised Cancelled
    clean(c)
  end)

  it("a deadline inside the iterator that it absorbs leaves the upload alone", function()
    local i = 0
    local r = within(5, c.post, c, "/sum", { body = function()
      i = i + 1
      if i > 4 then return nil end
      corio.move_on_after(0.01, corio.sleep, 1)  -- cancels an inner scope only
      return "abcd"
    end })
    assert.equal(16, r:json().n)
    clean(c)
  end)

  it("an early answer that comes while the iterator blocks: returned once it returns", function()
    local n = 0
    -- the server answers 0.15 s after the request came, without reading
    -- the body (was: at once, which on a slow machine came before curl
    -- asked for the second chunk)
    local ok, r = pcall(within, 5, c.post, c, "/early?code=413&wait=0.15", { body = function()
      n = n + 1
      if n == 1 then return "first" end
      corio.sleep(0.6)  -- the 413 comes meanwhile
      return string.rep("s", 100)
    end })
    if ok then
      assert.equal(413, r.status)
      assert.equal(2, n)
    else
      assert.equal("network", r.kind)  -- (the server may reset first)
    end
    clean(c)
  end)

  it("cancelled just as the server answers early, then the client is reused", function()
    for delay = 0, 0.02, 0.002 do
      local gave = 0
      local task = corio.spawn(c.post, c, "/early?code=413", { body = function()
        gave = gave + 1
        corio.sleep(0.001)
        return string.rep("e", 65536)
      end })
      corio.sleep(delay)
      task:cancel()
      assert.equal(0, c:stats().in_flight)
      pcall(task.join, task)
      helpers.http_still_works(c, 5)
    end
    local st = c:stats()
    assert.equal(0, st.in_flight)
    clean(c)
  end)
end)

describe("corio.http streamed request bodies: files, redirects, module functions", function()
  cb.timeout(60)
  local c, dir, rmdir
  before_each(function()
    c = http.client { base_url = base }
    dir, rmdir = helpers.temp_dir("uphunt")
  end)
  after_each(function() c:close(); rmdir() end)

  it("a file at its end, from its middle, opened for writing only", function()
    local p = dir .. "/f.bin"
    helpers.io_write(p, string.rep("0123456789", 10000))
    local f = fs.open(p, "rb")
    f:seek("set", 40000)
    local j = within(5, c.put, c, "/sum", { body = f }):json()
    assert.same({ 60000, "60000", false }, { j.n, j.length, j.chunked })
    -- now at its end: an empty body with Content-Length 0
    j = within(5, c.put, c, "/sum", { body = f }):json()
    assert.same({ 0, "0" }, { j.n, j.length })
    f:close()
    -- from where a read left it (its read-ahead holds more than it gave)
    f = fs.open(p, "rb")
    assert.equal(1000, #f:read(1000))
    j = within(5, c.put, c, "/sum", { body = f }):json()
    assert.same({ 99000, "99000" }, { j.n, j.length })
    f:close()
    local w = fs.open(dir .. "/w.bin", "wb")
    local err = catch(within, 5, c.put, c, "/sum", { body = w })
    assert.matches("w.bin", tostring(err))
    w:close()
    clean(c)
  end)

  it("a file that grows during the upload runs past its length", function()
    local p = dir .. "/grow.log"
    helpers.io_write(p, string.rep("g", 200000))
    local f = fs.open(p, "rb")
    local w = fs.open(p, "ab")
    -- another task appends while the upload (its length taken at the
    -- start: 200000) reads
    local grower = corio.spawn(function()
      for _ = 1, 10 do
        w:write(string.rep("h", 100000))
        w:flush()
        corio.sleep(0.001)
      end
    end)
    local err = catch(within, 5, c.put, c, "/slow-sum?d=0.001", { body = f })
    grower:join()
    w:close()
    f:close()
    assert.equal("invalid", err.kind)
    assert.matches("the body ran past its Content%-Length 200000", err.message)
    clean(c)
  end)

  it("a file closed by another task during the upload", function()
    local p = dir .. "/g.bin"
    helpers.io_write(p, string.rep("x", 4 * 1024 * 1024))
    local f = fs.open(p, "rb")
    local t = corio.spawn(pcall, c.put, c, "/slow-sum?d=0.01", { body = f })
    corio.sleep(0.05)
    f:close()
    local ok, err = within(5, t.join, t)
    assert.is_false(ok)
    -- the read's own error, unchanged
    assert.equal("closed", err.kind)
    assert.matches("the file is closed", err.message)
    clean(c)
  end)

  it("a FIFO goes out chunked", function()
    local p = dir .. "/fifo"
    assert.is_true(os.execute("mkfifo " .. p) == 0)
    local w = corio.spawn(function()
      local f = fs.open(p, "wb")
      for _ = 1, 10 do f:write(string.rep("w", 1000)) end
      f:close()
    end)
    local f = fs.open(p, "rb")
    local j = within(5, c.put, c, "/sum", { body = f }):json()
    w:join()
    f:close()
    assert.same({ 10000, true }, { j.n, j.chunked })
    clean(c)
  end)

  it("/dev/zero: chunked without a Content-Length, refused past one", function()
    -- a character device seeks (to 0) but never ends: it is no regular
    -- file, so its size is no Content-Length (it went out as
    -- "Content-Length: 0", then was refused as running past it)
    local f = fs.open("/dev/zero", "rb")
    local ok, err = pcall(corio.move_on_after, 0.3, c.put, c, "/sum", { body = f })
    f:close()
    assert.is_true(ok, tostring(err))
    assert.equal(0, c:stats().in_flight)
    -- with a Content-Length it must match (as for any body)
    f = fs.open("/dev/zero", "rb")
    err = catch(within, 5, c.put, c, "/sum", { body = f,
      headers = { ["Content-Length"] = "100000" } })
    f:close()
    assert.equal("invalid", err.kind)
    assert.matches("the body ran past its Content%-Length 100000", err.message)
    clean(c)
  end)

  it("301/302/303 drop the body and its headers; Basic auth; base_url", function()
    local f = http.client { base_url = base, follow_redirects = true }
    for _, code in ipairs { 301, 302, 303 } do
      local j = within(5, f.post, f, "/redirect-to?code=" .. code .. "&url=/echo",
        { body = chunks(2, 10), headers = { ["Content-Length"] = "20", ["Content-Type"] = "x/y" } }):json()
      assert.same({ "GET", "" }, { j.method, j.body })
      assert.is_nil(j.headers["content-length"])
      assert.is_nil(j.headers["content-type"])
      assert.is_nil(j.headers["transfer-encoding"])
    end
    f:close()
    local u = base:gsub("^http://", "http://me:secret@") .. "/echo"
    local j = within(5, c.post, c, u, { body = chunks(2, 3) }):json()
    assert.equal("Basic " .. "bWU6c2VjcmV0", j.headers["authorization"])
    assert.equal("aaabbb", j.body)
    clean(c)
  end)

  it("base_url with a path and relative URLs", function()
    local b = http.client { base_url = base .. "/" }
    local j = within(5, b.put, b, "sum", { body = chunks(2, 4) }):json()
    assert.same({ 8, "PUT", true }, { j.n, j.method, j.chunked })
    j = within(5, b.request, b, "DELETE", "sum?x=1", { body = chunks(1, 3) }):json()
    assert.same({ 3, "DELETE" }, { j.n, j.method })
    b:close()
  end)

  it("the module-level http.post with a function body", function()
    local j = within(5, http.post, base .. "/sum", { body = chunks(3, 7) }):json()
    assert.equal(21, j.n)
  end)
end)

-- HTTP/2: a private nginx (tests/http/nginx.sh, as http2_spec.lua), whose
-- /up/ stores what is PUT there.
describe("corio.http streamed request bodies over HTTP/2", function()
  cb.timeout(90)
  local src = os.getenv("CORIO_SOURCE_DIR") or "."
  local dir, why_not, h2c, h2s, cert
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    local p = assert(io.popen(("bash %s/tests/http/nginx.sh start %s 2>&1"):format(src, dir)))
    local out = p:read("*a")
    p:close()
    local a, b = out:match("PORTS (%d+) (%d+)")
    if a then
      h2c, h2s, cert = "http://127.0.0.1:" .. a, "https://127.0.0.1:" .. b, dir .. "/cert.pem"
    elseif out:find("not installed", 1, true) then
      why_not = out:gsub("%s+$", "")
    else
      error("tests/http/nginx.sh failed: " .. out)
    end
  end)
  teardown(function()
    if dir then os.execute(("bash %s/tests/http/nginx.sh stop %s; rm -rf %s"):format(src, dir, dir)) end
  end)

  for _, which in ipairs { "h2c", "h2 over TLS" } do
    it(which .. ": 12 uploads at once share one connection", function()
      if why_not then return pending(why_not) end
      local c = http.client { base_url = which == "h2c" and h2c or h2s, http2 = true, verify = cert,
        limits = { max_connections = 1 } }
      within(5, c.get, c, "/up/")  -- (a 403 or 404: the connection is open)
      local tasks = {}
      for k = 1, 12 do
        tasks[k] = corio.spawn(function()
          local i = 0
          return c:put("/up/m" .. k .. ".bin", { body = function()
            i = i + 1
            if i > 40 then return nil end
            if i % 5 == 0 then corio.sleep(0.001) end
            return string.rep(string.char(64 + k), 5000 + i)
          end }).status
        end)
      end
      within(30, function()
        for k = 1, 12 do
          local s = tasks[k]:join()
          assert.is_true(s == 201 or s == 204, "status " .. tostring(s))
        end
      end)
      for k = 1, 12 do
        local want = {}
        for i = 1, 40 do want[i] = string.rep(string.char(64 + k), 5000 + i) end
        assert.is_true(within(5, c.get, c, "/up/m" .. k .. ".bin"):text() == table.concat(want))
      end
      assert.equal(1, c:stats().opened)
      assert.equal(0, c:stats().in_flight)
      -- one cancelled (its iterator blocked on a channel) while others go on
      local ch = corio.channel()
      local victim = corio.spawn(c.put, c, "/up/v.bin", { body = ch:iter() })
      local other = corio.spawn(c.put, c, "/up/o.bin", { body = chunks(50, 1000) })
      ch:send("first")
      corio.sleep(0.02)
      victim:cancel()
      local s = within(10, other.join, other)
      assert.is_true(s.status == 201 or s.status == 204)
      assert.equal(0, c:stats().in_flight)
      local ok, err = pcall(within, 5, victim.join, victim)
      assert.is_true(not ok and corio.is_cancelled(err), tostring(err))
      assert.equal(200, within(5, c.get, c, "/up/o.bin").status)
      assert.equal(1, c:stats().opened)
      c:close()
    end)

    it(which .. ": a request from the iterator shares the upload's connection", function()
      if why_not then return pending(why_not) end
      local c = http.client { base_url = which == "h2c" and h2c or h2s, http2 = true, verify = cert,
        limits = { max_connections = 1 } }
      within(5, c.get, c, "/up/")
      local n, got = 0, {}
      local r = within(10, c.put, c, "/up/r.bin", { body = function()
        n = n + 1
        if n > 3 then return nil end
        got[n] = c:get("/up/").status
        return "chunk" .. n
      end })
      assert.is_true(r.status == 201 or r.status == 204, "status " .. r.status)
      assert.equal("chunk1chunk2chunk3", within(5, c.get, c, "/up/r.bin"):text())
      assert.equal(3, #got)
      assert.equal(1, c:stats().opened)
      c:close()
    end)

    it(which .. ": nginx refuses a body over its limit (413) mid-upload", function()
      if why_not then return pending(why_not) end
      local c = http.client { base_url = which == "h2c" and h2c or h2s, http2 = true, verify = cert }
      local block = string.rep("b", 1024 * 1024)
      local n = 0
      local ok, r = pcall(within, 20, c.put, c, "/up/big.bin", { body = function()
        n = n + 1
        if n > 200 then return nil end
        return block
      end })
      if ok then assert.equal(413, r.status) else assert.is_truthy(r.kind) end
      assert.is_true(n < 200, "pulled " .. n)
      -- with a Content-Length over the limit: refused before the body
      -- (over h2c nginx's answer comes as a stream error, kind
      -- "protocol", as for a string body: libcurl 7.88 and nginx, not
      -- the streaming)
      n = 0
      ok, r = pcall(within, 20, c.put, c, "/up/big2.bin", { body = function()
        n = n + 1
        if n > 200 then return nil end
        return block
      end, headers = { ["Content-Length"] = tostring(200 * #block) } })
      if ok then assert.equal(413, r.status) else assert.is_truthy(r.kind) end
      assert.is_true(n < 200, "pulled " .. n)
      assert.equal(0, c:stats().in_flight)
      assert.is_true(within(5, c.get, c, "/up/o.bin").status < 500)
      c:close()
    end)
  end
end)

describe("corio.http streamed request bodies outside a running loop", function()
  local src = os.getenv("CORIO_SOURCE_DIR") or "."
  local dir, rmdir
  before_each(function() dir, rmdir = helpers.temp_dir("uphsync") end)
  after_each(function() rmdir() end)

  -- rule 11: plain luajit, require "corio.http", no corio.run
  it("rule 11: an iterator, a file, a raising iterator, a client reused", function()
    helpers.io_write(dir .. "/f.txt", string.rep("f", 70000))
    helpers.io_write(dir .. "/s.lua", ([[
      local http = require "corio.http"
      local fs = require "corio.fs"
      local u = %q
      local i = 0
      local c = http.client()
      local r = c:post(u, { body = function()
        i = i + 1
        if i > 3 then return nil end
        return "abc"
      end })
      io.write(r:json().n, " ")
      r = c:put(u, { body = fs.open(%q, "rb") })
      io.write(r:json().n, " ", r:json().length, " ")
      local e = {}
      local ok, err = pcall(c.post, c, u, { body = function() error(e) end })
      io.write(tostring(ok), " ", type(err), " ", tostring(err.kind), " ")
      ok, err = pcall(c.post, c, u, { body = function() return 42 end })
      io.write(tostring(err.kind), " ")
      io.write(http.post(u, { body = function() i = i + 1; if i < 8 then return "z" end end }):json().n, " ")
      io.write(c:stats().in_flight)
      c:close()
    ]]):format(base .. "/sum", dir .. "/f.txt"))
    local cmd = ("LUA_PATH=%q LUA_CPATH=%q %s %s 2>&1"):format(
      os.getenv("CORIO_LUA_PATH") or (src .. "/lua/?.lua;" .. src .. "/lua/?/init.lua;;"),
      os.getenv("CORIO_LUA_CPATH") or (src .. "/build/lib/lua/5.1/?.so;;"),
      os.getenv("LUAJIT") or "luajit", dir .. "/s.lua")
    local p = io.popen(cmd)
    local out = p:read("*a")
    p:close()
    -- a raised non-corio value is wrapped by rule 11's corio.run (docs)
    assert.equal("9 70000 70000 false table error invalid 3 0", out)
  end)
end)
