-- http_upload_spec.lua: streamed request bodies (body = an iterator
-- function or an open corio.fs file), against tests/http/upload_server.py.
-- Every fault case runs under a deadline: a hang fails instead of stalling.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local catch = helpers.catch
local http = require("corio.http")
local fs = require("corio.fs")
local cb = require("corio.busted")

local base, stop_server

-- a request that must end within secs (a hang fails the test)
local within = corio.timeout

setup(function() base, stop_server = helpers.http_server(nil, nil, "upload_server.py") end)
teardown(function() if stop_server then stop_server() end end)

-- An iterator of n chunks of size bytes ("a", "b", ...).
local chunks = helpers.letter_chunks

-- An iterator that never ends (chunks of 64 KiB), yielding to the loop
-- every chunk; gave counts the chunks handed out.
local function endless()
  local block = string.rep("z", 65536)
  local it = { gave = 0 }
  it.fn = function()
    it.gave = it.gave + 1
    corio.yield()
    return block
  end
  return it
end

-- No transfer left in flight, and the client still answers.
local clean = helpers.http_clean

describe("corio.http streamed request bodies", function()
  cb.timeout(60)
  local c
  before_each(function() c = http.client { base_url = base } end)
  after_each(function() c:close() end)

  it("a 50 MiB upload from a generator, chunked, in bounded memory", function()
    -- the body: a 64 KiB block of pseudo-random bytes, 800 times,
    -- handed out in pieces of random sizes (1 B to 256 KiB)
    local rand = helpers.lcg(7)
    local t = {}
    for i = 1, 65536 do t[i] = string.char(rand(256) - 1) end
    local block = table.concat(t)
    t = nil
    local reps = 800
    local total = reps * #block
    local want = within(30, c.post, c, "/sha?rep=" .. reps, { body = block }):text()
    local pos, gave, calls = 0, 0, 0
    collectgarbage()
    local heap0, heap_max = collectgarbage("count"), 0
    local function gen()
      calls = calls + 1
      if pos >= total then return nil end
      local n = math.min(rand(32768) * rand(8), total - pos)  -- 1 B to 256 KiB
      local parts, need, off = {}, n, pos % #block
      while need > 0 do
        local k = math.min(need, #block - off)
        parts[#parts + 1] = block:sub(off + 1, off + k)
        need, off = need - k, 0
      end
      local chunk = table.concat(parts)
      pos = pos + n
      gave = gave + #chunk
      heap_max = math.max(heap_max, collectgarbage("count"))
      return chunk
    end
    local r = within(60, c.post, c, "/sum", { body = gen })
    local j = r:json()
    assert.equal(200, r.status)
    assert.equal(total, gave)
    assert.equal(total, j.n)
    assert.equal(want, j.sha)
    assert.is_true(j.chunked)
    assert.equal("", j.length)
    -- memory: about one chunk at a time, not the body (50 MiB)
    assert.is_true(heap_max - heap0 < 16 * 1024, "the Lua heap grew by "
      .. math.floor(heap_max - heap0) .. " KiB")
    assert.is_true(c:_upload_peak() <= 256 * 1024, "the C buffer grew to "
      .. c:_upload_peak())
    clean(c)
  end)

  it("with a Content-Length it is sent as is; without, chunked", function()
    local j = within(5, c.put, c, "/sum", { body = chunks(3, 1000),
      headers = { ["Content-Length"] = "3000" } }):json()
    assert.same({ 3000, false, "3000", "PUT" }, { j.n, j.chunked, j.length, j.method })
    j = within(5, c.patch, c, "/sum", { body = chunks(3, 1000) }):json()
    assert.same({ 3000, true, "PATCH" }, { j.n, j.chunked, j.method })
    -- an explicit Transfer-Encoding: chunked goes out chunked too
    j = within(5, c.post, c, "/sum", { body = chunks(2, 10),
      headers = { ["Transfer-Encoding"] = "chunked" } }):json()
    assert.same({ 20, true }, { j.n, j.chunked })
    -- an empty body: the iterator ends at once (empty chunks are skipped)
    local n = 0
    j = within(5, c.post, c, "/sum", { body = function()
      n = n + 1
      if n < 3 then return "" end
    end }):json()
    assert.same({ 0, true }, { j.n, j.chunked })
    j = within(5, c.post, c, "/sum", { body = function() end,
      headers = { ["Content-Length"] = "0" } }):json()
    assert.same({ 0, false, "0" }, { j.n, j.chunked, j.length })
    clean(c)
  end)

  it("iterators that block: a channel fed by another task, a coroutine.wrap generator", function()
    local ch = corio.channel(2)
    local producer = corio.spawn(function()
      for i = 1, 50 do
        if i % 10 == 0 then corio.sleep(0.01) end
        ch:send(string.rep("c", 1000 + i))
      end
      ch:close()
    end)
    local j = within(5, c.post, c, "/sum", { body = ch:iter() }):json()
    assert.equal(50 * 1000 + 50 * 51 / 2, j.n)
    producer:join()
    local gen = coroutine.wrap(function()
      for _ = 1, 5 do
        corio.sleep(0.01)
        coroutine.yield("g")
      end
    end)
    j = within(5, c.post, c, "/sum", { body = gen }):json()
    assert.equal(5, j.n)
    clean(c)
  end)

  it("a body that ends short of its Content-Length or runs past it is kind invalid", function()
    local err = catch(within, 5, c.post, c, "/sum", { body = chunks(2, 1000),
      headers = { ["Content-Length"] = "3000" } })
    assert.equal("invalid", err.kind)
    assert.equal("POST", err.method)
    assert.equal(base .. "/sum", err.url)
    assert.matches("POST " .. base .. "/sum: the body ended after 2000 bytes, short of its Content%-Length 3000",
      err.message)
    clean(c)
    err = catch(within, 5, c.post, c, "/sum", { body = chunks(4, 1000),
      headers = { ["Content-Length"] = "3000" } })
    assert.equal("invalid", err.kind)
    assert.matches("POST " .. base .. "/sum: the body ran past its Content%-Length 3000", err.message)
    clean(c)
    -- exactly at the length, then more: also too long
    err = catch(within, 5, c.post, c, "/sum", { body = chunks(3, 1000),
      headers = { ["Content-Length"] = "2000" } })
    assert.matches("ran past its Content%-Length 2000", err.message)
    err = catch(c.post, c, "/sum", { body = chunks(1, 1),
      headers = { ["Content-Length"] = "x" } })
    assert.equal("invalid", err.kind)
    assert.matches("Content%-Length \"x\" is not a length", err.message)
    clean(c)
  end)

  it("an open corio.fs file goes from its position to its end, with its length", function()
    local dir, rm = helpers.temp_dir("upload")
    local path = dir .. "/data.bin"
    local rand = helpers.lcg(3)
    local t = {}
    for i = 1, 300000 do t[i] = string.char(rand(256) - 1) end
    local data = table.concat(t)
    fs.write_file(path, data)
    local f = fs.open(path, "rb")
    assert.equal(100, #f:read(100))
    local r = within(10, c.put, c, "/sum", { body = f })
    local j = r:json()
    local want = within(5, c.post, c, "/sha", { body = data:sub(101) }):text()
    assert.same({ #data - 100, false, tostring(#data - 100), want },
      { j.n, j.chunked, j.length, j.sha })
    -- the file was read to its end (and stays open)
    assert.is_nil(f:read(1))
    f:seek("set", 0)
    -- a Transfer-Encoding of the caller's: chunked, as asked
    j = within(10, c.post, c, "/sum", { body = f,
      headers = { ["Transfer-Encoding"] = "chunked" } }):json()
    assert.same({ #data, true }, { j.n, j.chunked })
    f:close()
    -- a closed file is refused before anything is sent
    local err = catch(c.post, c, "/sum", { body = f })
    assert.equal("invalid", err.kind)
    assert.matches("bad argument #2 to 'post' %(body: the corio.fs file is closed%)", err.message)
    rm()
    clean(c)
  end)

  it("a stream's body, and client:stream, are fed the same way", function()
    local r = within(5, c.stream, c, "POST", "/sum", { body = chunks(5, 70000) })
    local j = require("cjson").decode(r:read())
    r:close()
    assert.same({ 350000, true }, { j.n, j.chunked })
    clean(c)
  end)

  it("an iterator that raises: the error reaches the caller unchanged", function()
    local boom = setmetatable({}, { __tostring = function() return "boom" end })
    local n = 0
    local err = catch(within, 5, c.post, c, "/slow-sum?d=0.01", { body = function()
      n = n + 1
      if n == 20 then error(boom) end
      return string.rep("q", 50000)
    end })
    assert.equal(boom, err)
    assert.equal(20, n)
    clean(c)
    -- a string error too, at once (nothing was sent)
    err = catch(within, 5, c.post, c, "/sum", { body = function() error("nope", 0) end })
    assert.equal("nope", err)
    clean(c)
  end)

  it("a chunk that is not a string is kind invalid naming method and URL", function()
    local n = 0
    local err = catch(within, 5, c.post, c, "/sum", { body = function()
      n = n + 1
      if n < 3 then return "abc" end
      return 42
    end })
    assert.equal("invalid", err.kind)
    assert.equal(base .. "/sum", err.url)
    assert.matches("POST " .. base .. "/sum: the body iterator gave a number %(a string, or nil at the end, expected%)",
      err.message)
    clean(c)
  end)

  it("a body of a wrong type is kind invalid naming the argument", function()
    for _, b in ipairs { 42, {}, true } do
      local err = catch(c.post, c, "/sum", { body = b })
      assert.equal("invalid", err.kind)
      assert.matches("POST " .. base .. "/sum: bad argument #2 to 'post' %(body: string, function %(an iterator of "
        .. "chunks%) or open corio.fs file expected, got " .. type(b) .. "%)", err.message)
    end
    clean(c)
  end)

  it("cancelled mid-upload: the transfer is removed at once, the client reused", function()
    -- the task waits inside corio.http (the server reads slowly)
    local it = endless()
    local task = corio.spawn(c.post, c, "/slow-sum?d=0.02", { body = it.fn })
    corio.sleep(0.3)
    assert.is_true(it.gave > 0)
    assert.equal(1, c:stats().in_flight)
    task:cancel()
    assert.equal(0, c:stats().in_flight)   -- synchronously (rule 7)
    assert.is_true(corio.is_cancelled(catch(task.join, task)))
    local gave = it.gave
    corio.sleep(0.05)
    assert.equal(gave, it.gave)            -- nothing pulls the iterator any more
    clean(c)
    -- a scope deadline that fires while the iterator itself blocks
    local n, blocked = 0, false
    local ok = corio.move_on_after(0.3, c.post, c, "/sum", { body = function()
      n = n + 1
      if n == 5 then
        blocked = true
        corio.sleep(10)
      end
      return string.rep("w", 10000)
    end })
    assert.is_false(ok)
    assert.is_true(blocked)
    clean(c)
  end)

  it("a server that stops reading: write timeout", function()
    local it = endless()
    local t0 = corio.now()
    local err = catch(within, 5, c.post, c, "/stall?d=4", { body = it.fn,
      timeout = { write = 0.5 } })
    assert.equal("timeout", err.kind)
    assert.equal("write", err.phase)
    assert.matches("POST " .. base .. "/stall%?d=4: write timeout %(0.5 s%) expired", err.message)
    assert.is_true(corio.now() - t0 < 3)
    clean(c)
  end)

  it("a server that closes the connection mid-upload: kind network", function()
    local it = endless()
    local err = catch(within, 5, c.post, c, "/stall?d=0.3", { body = it.fn })
    assert.is_true(err.kind == "network" or err.kind == "protocol", tostring(err))
    assert.matches("POST " .. base .. "/stall%?d=0.3: ", err.message)
    clean(c)
  end)

  it("a slow producer is no write timeout", function()
    local n = 0
    local j = within(5, c.post, c, "/sum", { timeout = { write = 0.2 }, body = function()
      n = n + 1
      if n > 3 then return nil end
      corio.sleep(0.3)
      return "abc"
    end }):json()
    assert.equal(9, j.n)
    clean(c)
  end)

  it("a server that answers before it took the body", function()
    local it = endless()
    local ok, r = pcall(within, 5, c.post, c, "/early?code=413", { body = function()
      if it.gave >= 320 then return nil end  -- 20 MiB at most
      return it.fn()
    end })
    -- curl stops sending on the 413 and reads it; the server may also
    -- have reset the connection before curl read its answer
    if ok then
      assert.equal(413, r.status)
      assert.equal("too large", r:text())
    else
      assert.equal("network", r.kind)
    end
    assert.is_true(it.gave < 320)
    clean(c)
  end)

  it("307/308 cannot resend a function body; 303 turns into a GET", function()
    local f = http.client { base_url = base, follow_redirects = true }
    for _, code in ipairs { 307, 308 } do
      local err = catch(within, 5, f.post, f, "/redirect-to?code=" .. code .. "&url=/sum",
        { body = chunks(2, 10) })
      assert.equal("redirect", err.kind)
      assert.matches("cannot follow the " .. code .. " redirect to .*/sum: the request body %(a "
        .. "function or file%) was consumed as it was sent and cannot be replayed", err.message)
      clean(f)
    end
    local j = within(5, f.post, f, "/redirect-to?code=303&url=/echo",
      { body = chunks(2, 10) }):json()
    assert.same({ "GET", "" }, { j.method, j.body })
    -- not following: the 307 is the response
    local r = within(5, c.post, c, "/redirect-to?code=307&url=/sum", { body = chunks(2, 10) })
    assert.equal(307, r.status)
    f:close()
    clean(c)
  end)

  it("a transport sees req.body as the iterator function itself", function()
    local seen
    local t = http.client { transport = function(req)
      seen = req.body
      local parts = {}
      for chunk in req.body do parts[#parts + 1] = chunk end
      return { status = 200, body = table.concat(parts) }
    end }
    local gen = chunks(3, 2)
    local r = t:post("http://x/", { body = gen })
    assert.equal(gen, seen)
    assert.equal("aabbcc", r:text())
  end)
end)
