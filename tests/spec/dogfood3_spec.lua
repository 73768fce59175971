-- dogfood3_spec.lua: round 3 of corio used the way a user writes programs
-- from the docs (README, docs/*.md, SPEC): a download manager (several
-- streams to files at once, progress, resume after connection resets, a
-- read timeout per file, one download cancelled while the others go on),
-- a crawler (corio.map with a limit over redirects and failures on a
-- pool-limited client whose stats() are checked), a file pipeline
-- (fs.lines -> channel -> workers -> channel -> writer, cancelled midway
-- with no descriptor left), a retry/backoff library tested with
-- corio.testing, corio.to_thread for CPU and blocking work (and corio
-- inside a worker), and tasks spawned by code loaded from a string.
-- Rounds 1 and 2 are dogfood_spec.lua and dogfood2_spec.lua. The HTTP
-- server is tests/http/dogfood_server.py; the `corio script.lua` parts
-- are tests/cli/dogfood3.sh, the C host tests/c/test_dogfood3_embed.c.
--
-- Defects found: a worker's require "corio" loaded corio/core.so, a
-- second copy of the runtime (ASan: odr-violation; a host with corio
-- linked in: module not found); a spawn site in a chunk loaded from a
-- string was shown as the whole code (fixed on main meanwhile, in
-- runtime/task.c: these tests cover tracebacks, corio.tasks(), the
-- deadlock message and the SIGUSR1 dump); LuaJIT traces kept the first
-- iterators of a process (fs.lines, f:lines, f:chunks, iter_bytes,
-- iter_lines, ch:iter) and so their file, stream or channel from the
-- collector (tests/cli/dogfood3.sh); a timeout libcurl's own timer
-- caught first had curl's message, not corio's.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local cb = require("corio.busted")
local http = require("corio.http")
local fs = require("corio.fs")
local testing = require("corio.testing")
local cjson = require("cjson")

local base, stop_server
local run_id = tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))

setup(function()
  base, stop_server = helpers.http_server("--lifetime 280", nil,
                                          "dogfood_server.py")
end)
teardown(function() if stop_server then stop_server() end end)

-- the bytes /file/<n> serves: byte i is (i * 7 + i // 251) % 256
local function check_file_bytes(data, size, what)
  assert.equal(size, #data, what)
  for i = 0, size - 1, 997 do
    local want = (i * 7 + math.floor(i / 251)) % 256
    if data:byte(i + 1) ~= want then
      error(("%s: byte %d is %d, expected %d"):format(what, i, data:byte(i + 1), want))
    end
  end
  local i = size - 1
  assert.equal((i * 7 + math.floor(i / 251)) % 256, data:byte(size), what)
end

local function hits()
  local c = http.client { base_url = base }
  local h = c:get("/hits"):json()
  c:close()
  return h
end

-------------------------------------------------------------------------------
-- A download manager
-------------------------------------------------------------------------------

-- fetch(name, url, opts) streams url into dir/name.part, renames it to
-- dir/name when complete, and resumes with a Range header after kind
-- "network" (a reset) or "timeout" (a stall), at most opts.tries times.
-- progress[name] = {got, total} after every chunk.
local function download_manager(client, dir)
  local mgr = { progress = {}, attempts = {}, ranges = {} }
  function mgr.fetch(name, url, opts)
    opts = opts or {}
    local part, dest = dir .. "/" .. name .. ".part", dir .. "/" .. name
    local tries = opts.tries or 3
    for attempt = 1, tries do
      mgr.attempts[name] = attempt
      local have = fs.exists(part) and fs.stat(part).size or 0
      local headers = {}
      if have > 0 then
        headers.Range = "bytes=" .. have .. "-"
        mgr.ranges[name] = mgr.ranges[name] or {}
        table.insert(mgr.ranges[name], have)
      end
      local ok, err = pcall(fs.with_open, part, have > 0 and "ab" or "wb", function(f)
        client:stream("GET", url, { headers = headers, timeout = opts.timeout }, function(r)
          r:raise_for_status()
          if have > 0 then assert(r.status == 206, "the server did not resume") end
          local total = have + tonumber(r.headers["content-length"])
          local got = have
          mgr.progress[name] = { got, total }
          for chunk in r:iter_bytes() do
            f:write(chunk)
            got = got + #chunk
            mgr.progress[name] = { got, total }
            if opts.on_chunk then opts.on_chunk(got, total) end
          end
        end)
      end)
      if ok then
        fs.rename(part, dest)
        return fs.stat(dest).size
      end
      if corio.is_cancelled(err) then error(err, 0) end
      if type(err) ~= "table" or (err.kind ~= "network" and err.kind ~= "timeout")
          or attempt == tries then
        error(err, 0)
      end
      corio.sleep(0.01 * attempt)
    end
  end
  return mgr
end

describe("dogfood3: a download manager", function()
  local dir, rmdir, client, fds
  local function mgr_fail(url) return client:get(url):raise_for_status() end
  before_each(function()
    fds = helpers.open_fds()
    dir, rmdir = helpers.temp_dir("dl3")
    client = http.client { base_url = base, timeout = { read = 2 },
                           limits = { max_connections = 4 } }
  end)
  after_each(function()
    client:close()
    rmdir()
    helpers.assert_fds_back(fds)
  end)

  it("streams four files at once, resuming one after two connection resets",
    cb.timeout(30, function()
      local mgr = download_manager(client, dir)
      local q = "?rate=32768&tick=0.002&k=" .. run_id
      local files = {
        { "a.bin", 300000, "/file/300000" .. q },
        { "b.bin", 500000, "/file/500000" .. q .. "&cut=120000&cuts=2" },
        { "c.bin", 200000, "/file/200000" .. q },
        { "d.bin", 1, "/file/1" .. q },
      }
      local sizes = corio.map(files, function(f) return mgr.fetch(f[1], f[3]) end, { limit = 4 })
      for i, f in ipairs(files) do
        assert.equal(f[2], sizes[i])
        assert.same({ f[2], f[2] }, mgr.progress[f[1]])
        check_file_bytes(fs.read_file(dir .. "/" .. f[1]), f[2], f[1])
        assert.is_false(fs.exists(dir .. "/" .. f[1] .. ".part"))
      end
      assert.equal(3, mgr.attempts["b.bin"])
      -- each try resumed where the last one's bytes ended (a reset may
      -- drop bytes still in the socket: TCP discards them on RST)
      local r1, r2 = unpack(mgr.ranges["b.bin"])
      assert.is_true(r1 > 0 and r1 <= 120000, "first resume at " .. r1)
      assert.is_true(r2 > r1 and r2 <= r1 + 120000, "second resume at " .. r2)
      assert.equal(1, mgr.attempts["a.bin"])
      local st = client:stats()
      assert.equal(0, st.in_flight)
      assert.is_true(st.opened <= 6, "opened " .. st.opened)
    end))

  it("a file whose server stalls fails with a read timeout naming its URL; the others finish",
    cb.timeout(30, function()
      local mgr = download_manager(client, dir)
      local q = "?rate=32768&tick=0.002&k=" .. run_id
      local stalled = "/file/400000" .. q .. "&stall=100000&st=5"
      local t0 = corio.now()
      local sizes, errs = corio.map({ "/file/250000" .. q, stalled, "/file/150000" .. q },
        function(url, i)
          return mgr.fetch("f" .. i, url, { tries = 2, timeout = { read = 1 } })
        end, { return_errors = true })
      assert.equal(250000, sizes[1])
      assert.equal(150000, sizes[3])
      assert.is_nil(sizes[2])
      local err = errs[2]
      assert.equal("timeout", err.kind)
      assert.equal("read", err.phase)
      assert.matches("GET " .. base .. stalled, err.message, 1, true)
      -- two tries, each cut 1 s after the stall, not 5 s (a read timeout
      -- of 0.3 s here once cut a try short, before the stall, on a box
      -- loaded with three test suites)
      assert.equal(2, mgr.attempts.f2)
      assert.is_true(corio.now() - t0 < 4, "took " .. (corio.now() - t0))
      -- the second try resumed where the first stalled
      assert.same({ 100000 }, mgr.ranges.f2)
      assert.equal(200000, fs.stat(dir .. "/f2.part").size)
      check_file_bytes(fs.read_file(dir .. "/f2.part"), 200000, "f2.part")
      assert.equal(0, client:stats().in_flight)
    end))

  it("cancelling one download leaves the others going; its .part keeps every byte and resumes",
    cb.timeout(30, function()
      local mgr = download_manager(client, dir)
      local q = "?rate=16384&tick=0.004&k=" .. run_id
      local tasks = {}
      local third = corio.event()
      corio.scope(function(s)
        for i, size in ipairs({ 200000, 600000, 200000 }) do
          tasks[i] = s:spawn(mgr.fetch, "g" .. i, "/file/" .. size .. q, {
            on_chunk = i == 2 and function(got, total)
              if got >= total / 3 then third:set() end
            end or nil,
          })
          tasks[i].name = "download g" .. i
        end
        third:wait()
        tasks[2]:cancel()
      end)
      assert.equal("done", tasks[1]:status())
      assert.equal("cancelled", tasks[2]:status())
      assert.equal("done", tasks[3]:status())
      local err = helpers.catch(tasks[2].join, tasks[2])
      assert.is_true(corio.is_cancelled(err))
      assert.matches("download g2 was cancelled", err.message, 1, true)
      assert.equal(200000, fs.stat(dir .. "/g1").size)
      assert.equal(200000, fs.stat(dir .. "/g3").size)
      -- with_open wrote its buffer under a shield: the .part holds every
      -- byte the progress counted
      local kept = fs.stat(dir .. "/g2.part").size
      assert.equal(mgr.progress.g2[1], kept)
      assert.is_true(kept >= 200000 and kept < 600000, "kept " .. kept)
      assert.equal(0, client:stats().in_flight)
      -- resume it
      assert.equal(600000, mgr.fetch("g2", "/file/600000" .. q))
      assert.same({ kept }, mgr.ranges.g2)
      check_file_bytes(fs.read_file(dir .. "/g2"), 600000, "g2")
    end))

  it("a deadline around the whole batch cancels every stream; nothing is in flight, the client still works",
    cb.timeout(30, function()
      local mgr = download_manager(client, dir)
      local q = "?rate=4096&tick=0.02&k=" .. run_id
      local err = helpers.catch(corio.timeout, 0.3, corio.map, { 1, 2, 3, 4, 5 }, function(i)
        return mgr.fetch("h" .. i, "/file/" .. (100000 * i) .. q)
      end, { limit = 3 })
      assert.equal("timeout", err.kind)
      assert.equal(0.3, err.seconds)
      local st = client:stats()
      assert.equal(0, st.in_flight)
      assert.is_nil(mgr.progress.h4)     -- never started: the limit held it back
      for i = 1, 3 do assert.is_false(fs.exists(dir .. "/h" .. i)) end
      local r = client:get("/file/10" .. q)
      assert.equal(200, r.status)
      assert.equal(10, #r:text())
    end))

  it("races three mirrors with corio.first: the fastest wins, the losers' streams close and their parts go",
    cb.timeout(20, function()
      local cleaned = {}
      local function from_mirror(i, rate)
        local part = dir .. "/m" .. i .. ".part"
        -- a loser is cancelled: its cleanup blocks (fs calls are
        -- checkpoints), so it runs inside a shield
        corio.defer(function()
          corio.shield(function()
            if fs.exists(part) then fs.remove(part) cleaned[#cleaned + 1] = i end
          end)
        end)
        fs.with_open(part, "wb", function(f)
          client:stream("GET", "/file/300000?rate=" .. rate .. "&tick=0.01&m=" .. i .. "&k=" .. run_id,
            function(r)
              r:raise_for_status()
              for chunk in r:iter_bytes() do f:write(chunk) end
            end)
        end)
        corio.shield(fs.rename, part, dir .. "/final.bin")
        return i
      end
      local v, idx = corio.first({
        function() return from_mirror(1, 4096) end,
        function() return from_mirror(2, 65536) end,
        function() error(corio.new_error("mirror", "mirror 3 is down")) end,
        function() return from_mirror(4, 8192) end,
      })
      assert.equal(2, v)
      assert.equal(2, idx)
      table.sort(cleaned)
      assert.same({ 1, 4 }, cleaned)
      local left = {}
      for name in fs.scandir(dir) do left[#left + 1] = name end
      assert.same({ "final.bin" }, left)
      check_file_bytes(fs.read_file(dir .. "/final.bin"), 300000, "final.bin")
      assert.equal(0, client:stats().in_flight)
      -- every mirror failing: the first error, with all of them listed
      local err = helpers.catch(corio.first, {
        function() return mgr_fail("/nope/1") end,
        function() return mgr_fail("/nope/2") end,
      })
      assert.equal("status", err.kind)
      assert.equal(2, #err.errors)
    end))

  it("bad input and server errors: a 404 is a status error, a missing directory an fs error naming the path",
    cb.timeout(10, function()
      local mgr = download_manager(client, dir)
      local err = helpers.catch(mgr.fetch, "x", "/nope")
      assert.equal("status", err.kind)
      assert.equal(404, err.response.status)
      assert.matches("GET " .. base .. "/nope", err.message, 1, true)
      assert.equal(1, mgr.attempts.x)   -- not retried
      local mgr2 = download_manager(client, dir .. "/missing")
      err = helpers.catch(mgr2.fetch, "y", "/file/10")
      assert.equal("fs", err.kind)
      assert.equal("ENOENT", err.code)
      assert.equal(dir .. "/missing/y.part", err.path)
      assert.matches(dir .. "/missing/y.part", err.message, 1, true)
      assert.equal(0, client:stats().in_flight)
    end))
end)

-------------------------------------------------------------------------------
-- A crawler on a pool-limited client
-------------------------------------------------------------------------------

-- get(client, url): follow redirects, raise for status, retry with
-- exponential backoff on kinds "network" and "timeout"; tries[url] counts.
local function crawler(client, opts)
  local tries = {}
  local function get(url)
    local delay = opts.backoff
    for attempt = 1, opts.tries do
      tries[url] = attempt
      local ok, r = pcall(client.get, client, url, { follow_redirects = true })
      if ok then
        r:raise_for_status()
        return { url = r.url, body = r:text(), status = r.status }
      end
      if corio.is_cancelled(r) or (r.kind ~= "network" and r.kind ~= "timeout")
          or attempt == opts.tries then
        error(r, 0)
      end
      corio.sleep(delay)
      delay = delay * 2
    end
  end
  return get, tries
end

describe("dogfood3: a crawler", function()
  local client
  before_each(function()
    client = http.client { base_url = base, timeout = { read = 0.3, pool = 5 },
                           limits = { max_connections = 3 } }
  end)
  after_each(function() client:close() end)

  it("30 URLs, 8 at a time on 3 connections: redirects followed, resets and hangs retried, order kept",
    cb.timeout(30, function()
      local get, tries = crawler(client, { tries = 4, backoff = 0.01 })
      local urls = {}
      for i = 1, 30 do
        local u
        if i % 5 == 0 then
          u = "/moved/" .. i .. "?to=/page/" .. i .. "%3Fk%3D" .. run_id
        elseif i % 7 == 0 then
          u = "/page/" .. i .. "?fail=2&mode=reset&k=" .. run_id
        elseif i % 11 == 0 then
          u = "/page/" .. i .. "?fail=1&mode=hang&d=1&k=" .. run_id
        else
          u = "/page/" .. i .. "?k=" .. run_id
        end
        urls[i] = u
      end
      local peak, running = 0, 0
      local pages = corio.map(urls, function(u)
        running = running + 1
        peak = math.max(peak, running)
        corio.defer(function() running = running - 1 end)
        return get(u)
      end, { limit = 8 })
      assert.equal(8, peak)
      for i = 1, 30 do
        local p = pages[i]
        assert.equal(200, p.status)
        assert.equal(("page %d\n"):format(i):rep(100), p.body)
        if i % 5 == 0 then
          assert.equal(base .. "/page/" .. i .. "?k=" .. run_id, p.url)
        else
          assert.equal(base .. urls[i], p.url)
        end
      end
      -- a reset on a kept connection before any byte of the answer is
      -- sent again by libcurl for a GET (http.md, "A request is sent
      -- once"): the server saw 3 hits, the crawler 2 or 3 tries
      local h = hits()
      for _, i in ipairs({ 7, 14 }) do
        assert.equal(3, h[urls[i]])
        assert.is_true(tries[urls[i]] == 2 or tries[urls[i]] == 3, "tries " .. tries[urls[i]])
      end
      assert.equal(2, tries[urls[11]])
      assert.equal(1, tries[urls[1]])
      local st = client:stats()
      assert.equal(0, st.in_flight)
      -- 3 connections at a time: resets and hangs close theirs, so more
      -- are opened over the run, but never more than 3 at once (idle)
      assert.is_true(st.idle <= 3, "idle " .. st.idle)
      assert.is_true(st.reused > 20, "reused " .. st.reused)
    end))

  it("a failing page ends the crawl with its status error; return_errors collects them instead",
    cb.timeout(20, function()
      local get, tries = crawler(client, { tries = 3, backoff = 0.01 })
      local urls = { "/page/1?k=" .. run_id, "/nope/2", "/page/3?k=" .. run_id,
                     "/page/4?fail=9&mode=reset&k=" .. run_id }
      local err = helpers.catch(corio.map, urls, get, { limit = 2 })
      assert.equal("status", err.kind)
      assert.equal(404, err.response.status)
      assert.matches("GET " .. base .. "/nope/2: status 404", err.message, 1, true)
      local res, errs = corio.map(urls, get, { limit = 2, return_errors = true })
      assert.equal("page 1\n", res[1].body:sub(1, 7))
      assert.equal("page 3\n", res[3].body:sub(1, 7))
      assert.equal("status", errs[2].kind)
      assert.equal("network", errs[4].kind)
      assert.matches(urls[4], errs[4].message, 1, true)
      assert.equal(3, tries[urls[4]])
      assert.is_nil(errs[1])
      assert.equal(0, client:stats().in_flight)
    end))

  it("redirects: not followed by default, too many is kind redirect, 3xx fails raise_for_status",
    cb.timeout(10, function()
      local r = client:get("/moved/1")
      assert.equal(301, r.status)
      assert.equal("/page/1", r.headers.location)
      local err = helpers.catch(r.raise_for_status, r)
      assert.equal("status", err.kind)
      err = helpers.catch(client.get, client, "/moved/1", { follow_redirects = true, max_redirects = 0 })
      assert.equal("redirect", err.kind)
      assert.matches("/moved/1", err.message, 1, true)
      -- three hops: /moved/1 -> /moved/2 -> /moved/3 -> /page/3
      local chain = "/moved/1?to=/moved/2%3Fto%3D/moved/3"
      assert.equal(base .. "/page/3", client:get(chain, { follow_redirects = true }).url)
      err = helpers.catch(client.get, client, chain, { follow_redirects = true, max_redirects = 2 })
      assert.equal("redirect", err.kind)
      assert.matches("too many redirects (more than 2)", err.message, 1, true)
      -- the error names the hop where it gave up (as httpx's
      -- TooManyRedirects carries the last request)
      assert.matches("GET " .. base .. "/moved/3: too many", err.message, 1, true)
      assert.equal(base .. "/moved/3", err.url)
      err = helpers.catch(client.get, client, "/moved/1?to=ftp://x/y", { follow_redirects = true })
      assert.equal("redirect", err.kind)
      assert.equal(0, client:stats().in_flight)
    end))

  it("a pool of one connection: a second request waits its turn, and times out in phase pool",
    cb.timeout(10, function()
      local one = http.client { base_url = base, limits = { max_connections = 1 },
                                timeout = { pool = 0.2, read = 3 } }
      corio.defer(function() one:close() end)
      local t0 = corio.now()
      local res, errs = corio.gather({
        function() return one:get("/slow/1?d=0.6&k=" .. run_id):text() end,
        function() corio.sleep(0.05); return one:get("/page/1?k=" .. run_id):text() end,
      }, { return_errors = true })
      assert.equal("slow 1\n", res[1])
      assert.equal("timeout", errs[2].kind)
      assert.equal("pool", errs[2].phase)
      assert.is_true(corio.now() - t0 < 1, "took " .. (corio.now() - t0))
      -- the waiter left the queue: the pool is free and reused
      assert.equal(200, one:get("/page/1?k=" .. run_id).status)
      local st = one:stats()
      assert.equal(1, st.opened)
      assert.equal(0, st.in_flight)
      assert.equal(1, st.idle)
    end))

  it("bad input is kind invalid before anything is sent", function()
    local err = helpers.catch(client.get, client, "/x", { params = { a = { x = 1 } } })
    assert.equal("invalid", err.kind)
    err = helpers.catch(http.client, { limits = { max_connections = 0 } })
    assert.equal("invalid", err.kind)
    assert.matches("limits.max_connections", err.message, 1, true)
    err = helpers.catch(corio.map, { 1 }, function() end, { limit = 0 })
    assert.matches("limit must be a positive integer", err, 1, true)
    assert.equal(0, client:stats().opened)
  end)
end)

-------------------------------------------------------------------------------
-- A file pipeline: reader -> channel -> workers -> channel -> writer
-------------------------------------------------------------------------------

-- Reads src line by line, has `workers` tasks transform each line, and
-- writes "n<TAB>result" lines to dst in the order they finish. Returns
-- the number of lines written. stats: read, written, max_ahead (lines read
-- but not yet written).
local function pipeline(src, dst, transform, opts)
  local stats = { read = 0, written = 0, max_ahead = 0 }
  local lines, results = corio.channel(opts.cap), corio.channel(opts.cap)
  corio.scope(function(s)
    s:spawn(function()                        -- the reader
      local n = 0
      local function each(line)
        n = n + 1
        stats.read = n
        stats.max_ahead = math.max(stats.max_ahead, stats.read - stats.written)
        lines:send({ n, line })
      end
      if opts.fs_lines then
        -- fs.lines, as io.lines: closed at the end of the file only
        for line in fs.lines(src) do each(line) end
      else
        -- closed however the loop ends (a cancel, an error)
        fs.with_open(src, "r", function(f)
          for line in f:lines() do each(line) end
        end)
      end
      lines:close()
    end)
    s:spawn(function()                        -- the workers, then close results
      corio.scope(function(ws)
        for _ = 1, opts.workers do
          ws:spawn(function()
            for item in lines:iter() do
              results:send({ item[1], transform(item[2], item[1]) })
            end
          end)
        end
      end)
      results:close()
    end)
    s:spawn(function()                        -- the writer
      fs.with_open(dst, "w", function(f)
        for r in results:iter() do
          f:write(r[1], "\t", r[2], "\n")
          stats.written = stats.written + 1
          if opts.on_write then opts.on_write(stats.written) end
        end
      end)
    end)
  end)
  return stats.written, stats
end

describe("dogfood3: a file pipeline", function()
  local dir, rmdir, fds, src
  local N = 20000
  before_each(function()
    dir, rmdir = helpers.temp_dir("pipe3")
    src = dir .. "/in.txt"
    local t = {}
    for i = 1, N do t[i] = ("line %d %s"):format(i, ("x"):rep(i % 50)) end
    helpers.io_write(src, table.concat(t, "\n") .. "\n")
    fds = helpers.open_fds()
  end)
  after_each(function()
    rmdir()
  end)

  local function upper(line, n)
    if n % 100 == 0 then corio.yield() end
    return line:upper()
  end

  it("passes every line once through 4 workers, with backpressure bounding the reader",
    cb.timeout(30, function()
      local dst = dir .. "/out.txt"
      local n, stats = pipeline(src, dst, upper, { cap = 8, workers = 4 })
      assert.equal(N, n)
      -- at most: both channels full, one item in each worker, one in the
      -- reader's send and one in the writer
      assert.is_true(stats.max_ahead <= 8 + 8 + 4 + 2, "max ahead " .. stats.max_ahead)
      local seen, count = {}, 0
      for line in io.lines(dst) do
        local i, rest = line:match("^(%d+)\t(.*)$")
        i = tonumber(i)
        assert.is_nil(seen[i])
        seen[i] = true
        count = count + 1
        assert.equal(("LINE %d %s"):format(i, ("X"):rep(i % 50)), rest)
      end
      assert.equal(N, count)
      assert.equal(fds, helpers.open_fds())
    end))

  it("cancelled midway: no descriptor left open without waiting for the collector; what was written is whole",
    cb.timeout(30, function()
      local dst = dir .. "/out.txt"
      local cancelled_at
      corio.scope(function(s)
        s:spawn(pipeline, src, dst, upper, { cap = 8, workers = 4,
          on_write = function(w) if w == 5000 then cancelled_at = w; s:cancel() end end })
      end)
      assert.equal(5000, cancelled_at)
      -- the reader's fs.lines file and the writer's file are closed now,
      -- not when the collector gets to them
      assert.equal(fds, helpers.open_fds())
      local count = 0
      for line in io.lines(dst) do
        count = count + 1
        assert.matches("^%d+\tLINE %d+ X*$", line)
      end
      assert.equal(5000, count)
    end))

  it("with fs.lines, a loop left by a cancel leaves its file to the collector, which closes it",
    cb.timeout(30, function()
      local dst = dir .. "/out.txt"
      corio.scope(function(s)
        s:spawn(pipeline, src, dst, upper, { cap = 8, workers = 4, fs_lines = true,
          on_write = function(w) if w == 100 then s:cancel() end end })
      end)
      -- the writer's file is closed (with_open); the reader's stays open
      -- until its iterator is collected (a compiled loop does not keep
      -- it: tests/cli/dogfood3.sh)
      local open_now = helpers.open_fds()
      assert.is_true(open_now == fds or open_now == fds + 1, "open: " .. (open_now - fds))
      helpers.assert_fds_back(fds)
    end))

  it("an error in one worker stops every stage; the scope raises it; no descriptor is left",
    cb.timeout(30, function()
      local dst = dir .. "/out.txt"
      local err = helpers.catch(pipeline, src, dst, function(line, n)
        if n == 777 then error("cannot parse line 777: " .. line) end
        return line
      end, { cap = 4, workers = 3 })
      assert.equal("error", err.kind)
      assert.matches("cannot parse line 777: line 777", err.message, 1, true)
      assert.equal(fds, helpers.open_fds())
    end))

  it("a missing input or output directory is an fs error naming the path", cb.timeout(10, function()
    local err = helpers.catch(pipeline, dir .. "/none.txt", dir .. "/out.txt", upper,
                              { cap = 4, workers = 2 })
    assert.equal("fs", err.kind)
    assert.equal("open", err.op)
    assert.equal("ENOENT", err.code)
    assert.equal(dir .. "/none.txt", err.path)
    err = helpers.catch(pipeline, src, dir .. "/no/out.txt", upper, { cap = 4, workers = 2 })
    assert.equal("fs", err.kind)
    assert.equal(dir .. "/no/out.txt", err.path)
    err = helpers.catch(pipeline, dir, dir .. "/out2.txt", upper, { cap = 4, workers = 2 })
    assert.equal("fs", err.kind)
    assert.equal("EISDIR", err.code)
    assert.equal(dir, err.path)
    assert.equal(fds, helpers.open_fds())
  end))
end)

-------------------------------------------------------------------------------
-- A retry/backoff library and its spec suite on corio.testing
-------------------------------------------------------------------------------

-- retry(fn, opts): calls fn() until it returns, sleeping base, base *
-- factor, ... (at most max_delay, times a jitter in [1 - jitter, 1]) in
-- between; at most opts.tries calls; only errors retry_if(err) accepts
-- are retried; a Cancelled never is. opts.on_retry(attempt, err, delay).
-- A checkpoint on entry, as corio's own blocking calls are.
local function retry(fn, opts)
  opts = opts or {}
  local tries, delay = opts.tries or 3, opts.base or 0.1
  local factor, max_delay = opts.factor or 2, opts.max_delay or math.huge
  local jitter, rand = opts.jitter or 0, opts.random or math.random
  local retry_if = opts.retry_if or function() return true end
  if type(fn) ~= "function" then
    error("bad argument #1 to 'retry' (function expected, got " .. type(fn) .. ")", 2)
  end
  if type(tries) ~= "number" or tries < 1 then
    error("bad argument #2 to 'retry' (tries must be >= 1, got " .. tostring(tries) .. ")", 2)
  end
  corio.yield()
  for attempt = 1, tries do
    local res = { pcall(fn, attempt) }
    if res[1] then return unpack(res, 2, table.maxn(res)) end
    local err = res[2]
    if corio.is_cancelled(err) or attempt == tries or not retry_if(err) then
      error(err, 0)
    end
    local d = math.min(delay, max_delay) * (1 - jitter * rand())
    if opts.on_retry then opts.on_retry(attempt, err, d) end
    corio.sleep(d)
    delay = delay * factor
  end
end

describe("dogfood3: a retry library, tested on the virtual clock", function()
  local function flaky(fail_times, err)
    local calls = {}
    return function(attempt)
      calls[#calls + 1] = corio.now()
      if attempt <= fail_times then error(err or corio.new_error("network", "reset #" .. attempt), 0) end
      return "ok", attempt
    end, calls
  end

  it("backs off 0.1, 0.2, 0.4, 0.8 s capped at 0.5 s: exact on the virtual clock, no real time",
    function()
      local t_real = helpers.mono()
      testing.autojump(function()
        local fn, calls = flaky(4)
        local t0 = corio.now()
        local v, n = retry(fn, { tries = 5, base = 0.1, max_delay = 0.5 })
        assert.equal("ok", v)
        assert.equal(5, n)
        local at = {}
        for i, c in ipairs(calls) do at[i] = c - t0 end
        local want = { 0, 0.1, 0.3, 0.7, 1.2 }
        for i = 1, 5 do helpers.near(want[i], at[i], 1e-9) end
      end)
      assert.is_true(helpers.mono() - t_real < 0.5)
    end)

  it("virtual times are exact to the nanosecond: compare them with a tolerance, as api.md says", function()
    testing.autojump(function()
      local t0 = corio.now()
      retry(flaky(2), { tries = 3, base = 0.1 })
      local dt = corio.now() - t0
      assert.near(0.3, dt, 1e-9)
      -- the rounding is the subtraction's: a difference of large doubles
      assert.is_true(math.abs(dt - 0.3) < 1e-9)
    end)
  end)

  it("gives up after its tries with the last error; a kind it must not retry is raised at once",
    function()
      testing.autojump(function()
        local fn, calls = flaky(10)
        local retried = {}
        local err = helpers.catch(retry, fn, { tries = 3, on_retry = function(a, e, d)
          retried[#retried + 1] = { a, e.message, d }
        end })
        assert.equal("network", err.kind)
        assert.equal("reset #3", err.message)
        assert.equal(3, #calls)
        assert.same({ { 1, "reset #1", 0.1 }, { 2, "reset #2", 0.2 } }, retried)
        local fn2, calls2 = flaky(10, corio.new_error("status", "404"))
        err = helpers.catch(retry, fn2, { tries = 5,
          retry_if = function(e) return e.kind == "network" or e.kind == "timeout" end })
        assert.equal("status", err.kind)
        assert.equal(1, #calls2)
      end)
    end)

  it("jitter shortens each delay by at most its fraction", function()
    testing.autojump(function()
      local delays = {}
      local rng = helpers.lcg(7)
      retry(flaky(6), { tries = 7, base = 1, factor = 1, jitter = 0.5,
        random = function() return (rng(1000) - 1) / 1000 end,
        on_retry = function(_, _, d) delays[#delays + 1] = d end })
      assert.equal(6, #delays)
      local distinct = {}
      for _, d in ipairs(delays) do
        assert.is_true(d > 0.5 and d <= 1, "delay " .. d)
        distinct[d] = true
      end
      assert.is_true(next(distinct, next(distinct)) ~= nil, "jitter made no difference")
    end)
  end)

  it("is a checkpoint, also when the first call succeeds; a bare function is not", function()
    assert.equal("x", testing.assert_checkpoints(retry, function() return "x" end))
    local err = helpers.catch(testing.assert_checkpoints, function() return "x" end)
    assert.matches("without passing through a checkpoint", err, 1, true)
    -- so a retry loop in a cancelled scope stops before the first call
    local called = false
    err = helpers.catch_cancelled(retry, function() called = true end)
    assert.is_true(corio.is_cancelled(err))
    assert.is_false(called)
  end)

  it("a cancel during a backoff sleep ends it at once: no further call, the sleep's timer gone",
    function()
      testing.autojump(function()
        local fn, calls = flaky(10)
        local t0 = corio.now()
        local task = corio.spawn(retry, fn, { tries = 10, base = 60 })
        testing.wait_all_tasks_blocked()
        assert.equal(1, #calls)                       -- first call failed, now backing off
        local entry
        for _, e in ipairs(corio.tasks()) do if e.task == task then entry = e end end
        assert.equal("sleep", entry.waiting)
        task:cancel()
        local err = helpers.catch(task.join, task)
        assert.is_true(corio.is_cancelled(err))
        assert.equal(1, #calls)
        assert.equal(0, corio.now() - t0)             -- no virtual time passed
        -- nothing left armed: the clock would jump to a leftover timer
        corio.sleep(1)
        assert.equal(1, corio.now() - t0)
      end)
    end)

  it("a Cancelled raised by the function is never retried", function()
    testing.autojump(function()
      local calls = 0
      local done = corio.move_on_after(5, retry, function()
        calls = calls + 1
        corio.sleep(10)                               -- cut by the deadline
      end, { tries = 5 })
      assert.is_false(done)
      assert.equal(1, calls)
    end)
  end)

  it("a total deadline (corio.timeout) around the retries: the TimeoutError, not the last failure",
    function()
      testing.autojump(function()
        local fn, calls = flaky(100)
        local t0 = corio.now()
        local err = helpers.catch(corio.timeout, 1, retry, fn, { tries = 100, base = 0.3, factor = 1 })
        assert.equal("timeout", err.kind)
        assert.equal(1, err.seconds)
        helpers.near(1, corio.now() - t0, 1e-9)
        assert.equal(4, #calls)                       -- at 0, 0.3, 0.6, 0.9
      end)
    end)

  it("bad arguments are plain errors naming the argument", function()
    local err = helpers.catch(retry, 42)
    assert.matches("bad argument #1 to 'retry' (function expected, got number)", err, 1, true)
    err = helpers.catch(retry, function() end, { tries = 0 })
    assert.matches("bad argument #2 to 'retry' (tries must be >= 1, got 0)", err, 1, true)
  end)
end)

-------------------------------------------------------------------------------
-- corio.to_thread for CPU work and blocking calls
-------------------------------------------------------------------------------

describe("dogfood3: to_thread for CPU work and blocking calls", function()
  -- counts primes below n by trial division: plain CPU work, no upvalues
  local function count_primes(lo, hi)
    local c = 0
    for n = math.max(lo, 2), hi - 1 do
      local p = true
      for d = 2, math.floor(math.sqrt(n)) do
        if n % d == 0 then p = false break end
      end
      if p then c = c + 1 end
    end
    return c
  end

  it("splits a prime count over workers while a ticker keeps ticking", cb.timeout(30, function()
    local ticks, stop = 0, false
    local total
    corio.scope(function(s)
      s:spawn(function() while not stop do corio.sleep(0.005); ticks = ticks + 1 end end)
      local parts = corio.map({ 0, 1, 2, 3 }, function(k)
        return corio.to_thread(count_primes, k * 250000, (k + 1) * 250000)
      end)
      total = parts[1] + parts[2] + parts[3] + parts[4]
      stop = true
    end)
    assert.equal(78498, total)           -- primes below 10^6
    assert.is_true(ticks >= 5, "the loop was held: " .. ticks .. " ticks")
  end))

  it("a blocking call (a child process) runs on a worker; the loop goes on", cb.timeout(10, function()
    local ticks = 0
    local out
    corio.scope(function(s)
      local ticker = s:spawn(function() while true do corio.sleep(0.01); ticks = ticks + 1 end end)
      out = corio.to_thread(function(cmd)
        local p = io.popen(cmd)
        local o = p:read("*a")
        p:close()
        return o
      end, "sleep 0.3; echo done")
      ticker:cancel()
    end)
    assert.equal("done\n", out)
    assert.is_true(ticks >= 10, "ticks " .. ticks)
  end))

  it("a caller cancelled while its worker runs gets Cancelled at once; a queued call never runs",
    cb.timeout(20, function()
      local dir, rmdir = helpers.temp_dir("th3")
      corio.defer(rmdir)
      local marker = dir .. "/queued-ran"
      local t0 = corio.now()
      local busy, queued
      corio.scope(function(s)
        busy = {}
        for i = 1, 4 do                  -- the 4 workers of the default pool
          busy[i] = s:spawn(corio.to_thread, function() os.execute("sleep 0.4") return "slept" end)
        end
        corio.sleep(0.05)
        queued = s:spawn(corio.to_thread, function(p)
          local f = io.open(p, "w") f:write("ran") f:close()
        end, marker)
        corio.sleep(0.05)
        local t1 = corio.now()
        busy[1]:cancel()
        queued:cancel()
        local err = helpers.catch(busy[1].join, busy[1])
        assert.is_true(corio.is_cancelled(err))
        assert.is_true(corio.now() - t1 < 0.05, "the cancel waited for the worker")
      end)
      -- the scope waited for the other workers, not for the queued call
      assert.equal("slept", busy[2]:join())
      assert.equal("cancelled", queued:status())
      assert.is_true(corio.now() - t0 >= 0.35)
      corio.to_thread(function() end)    -- a worker is free again
      corio.sleep(0.1)
      assert.is_false(fs.exists(marker), "the cancelled queued call ran")
    end))

  it("errors: the worker's error with its traceback, upvalues, functions and unsendable results",
    cb.timeout(10, function()
      local err = helpers.catch(corio.to_thread, function(x)
        if x > 1 then error("too big: " .. x) end
      end, 5)
      assert.equal("error", err.kind)
      assert.matches("too big: 5", err.message, 1, true)
      assert.is_string(err.traceback)
      local up = 1
      err = helpers.catch(corio.to_thread, function() return up end)
      assert.matches("bad argument #1 to 'to_thread' (the function has upvalues ('up')", err, 1, true)
      err = helpers.catch(corio.to_thread, function() end, 1, print)
      assert.matches("bad argument #3 to 'to_thread'", err, 1, true)
      err = helpers.catch(corio.to_thread, function() return function() end end)
      assert.equal("error", err.kind)
      assert.matches("cannot send the results back", err.message, 1, true)
      err = helpers.catch_cancelled(corio.to_thread, function() return 1 end)
      assert.is_true(corio.is_cancelled(err))
    end))
end)

describe("dogfood3: corio inside a to_thread worker", function()
  local function core_so_mapped()
    for l in io.lines("/proc/self/maps") do
      if l:find("corio/core.so", 1, true) then return true end
    end
    return false
  end

  it("uses the corio code already in the process, not a second copy of corio.core", cb.timeout(10, function()
    -- under the corio program the runtime is built in: a worker's
    -- require "corio" loaded lib/lua/5.1/corio/core.so beside it, a second
    -- copy of the runtime (its own globals; AddressSanitizer aborts on it)
    local before = core_so_mapped()
    assert.equal("function", corio.to_thread(function()
      return type(require("corio").run)
    end))
    assert.equal(before, core_so_mapped())
  end))

  it("is a runtime of the worker's own: tasks, files and sleeps run there, synchronously",
    cb.timeout(20, function()
      local dir, rmdir = helpers.temp_dir("wk3")
      corio.defer(rmdir)
      local path = dir .. "/three"
      helpers.io_write(path, "abc")
      local t0 = corio.now()
      local res = corio.map({ 1, 2, 3, 4, 5, 6 }, function(i)
        return corio.to_thread(function(k, path)
          local wc = require("corio")
          local wfs = require("corio.fs")
          return wc.run(function()
            local r = wc.gather({
              function() wc.sleep(0.1) return k end,
              function() return #wfs.read_file(path) end,
              function() return wc.to_thread(function(x) return x * 2 end, k) end,
            })
            return r[1] * 100 + r[2] * 10 + r[3]
          end)
        end, i, path)
      end)
      for i = 1, 6 do assert.equal(i * 100 + 30 + i * 2, res[i]) end
      -- 6 calls on 4 workers, each 0.1 s in its own sleep
      assert.is_true(corio.now() - t0 >= 0.19, "took " .. (corio.now() - t0))
      -- an error of the worker's run comes back as the worker's error
      local err = helpers.catch(corio.to_thread, function()
        local wc = require("corio")
        return wc.run(function() wc.spawn(error, "child failed") wc.sleep(1) end)
      end)
      assert.equal("error", err.kind)
      assert.matches("child failed", err.message, 1, true)
      -- the caller's cancel does not reach the worker's sleep: the
      -- caller moves on, the worker ends on its own
      local done = corio.move_on_after(0.05, corio.to_thread, function()
        require("corio").sleep(0.2)
      end)
      assert.is_false(done)
    end))
end)

-------------------------------------------------------------------------------
-- Plugins loaded from strings (load(code)) that spawn tasks
-------------------------------------------------------------------------------

describe("dogfood3: tasks spawned by code loaded from a string", function()
  -- a plugin's code: its chunk name is the code itself, which Lua shows
  -- as [string "first line..."] (short_src)
  local plugin = table.concat({
    "local corio, s, fail = require('corio'), ...",
    "-- a plugin loaded from a string, " .. ("long comment "):rep(20),
    "s:spawn(function() corio.sleep(0.01) if fail then error('plugin failed') end end)",
    "s:spawn(function() corio.sleep(0.01) end)",
  }, "\n")
  local shown = '[string "local corio, s, fail = require(\'corio\'), ......"]'

  it("an error's traceback names the spawn site as Lua does, not with the whole code", function()
    local err = helpers.catch(corio.scope, function(s) assert(load(plugin))(s, true) end)
    assert.equal("error", err.kind)
    assert.matches("plugin failed", err.message, 1, true)
    assert.matches("spawned at " .. shown .. ":3)", err.traceback, 1, true)
    assert.is_nil(err.traceback:find("long comment", 1, true))
  end)

  -- (a deadlock's message and the SIGUSR1 dump: tests/cli/dogfood3.sh)
  it("corio.tasks() shows it the same way", function()
    corio.scope(function(s)
      assert(load(plugin))(s, false)
      local sites = {}
      for _, e in ipairs(corio.tasks()) do
        if e.spawned_at and e.spawned_at:find("[string", 1, true) then
          sites[#sites + 1] = e.spawned_at
        end
      end
      table.sort(sites)
      assert.same({ shown .. ":3", shown .. ":4" }, sites)
    end)
  end)
end)

describe("dogfood3: copying a large file under a deadline", function()
  it("fs.copy is one request a deadline waits for; a chunked copy stops between chunks",
    cb.timeout(60, function()
      local dir, rmdir = helpers.temp_dir("copy3")
      corio.defer(rmdir)
      local src = dir .. "/src.bin"
      local block = ("0123456789abcdef"):rep(65536)   -- 1 MiB
      fs.with_open(src, "wb", function(f) for _ = 1, 64 do f:write(block) end end)
      local fds = helpers.open_fds()
      -- fs.copy: the copy finishes whatever the deadline
      local done = corio.move_on_after(0.001, fs.copy, src, dir .. "/whole.bin")
      assert.is_true(done)
      assert.equal(64 * 1048576, fs.stat(dir .. "/whole.bin").size)
      -- a chunked copy: a cancel stops it between chunks, both files
      -- are closed and the copy holds every chunk written
      local copied = 0
      corio.scope(function(s)
        fs.with_open(src, "rb", function(f)
          fs.with_open(dir .. "/part.bin", "wb", function(out)
            for c in f:chunks(1048576) do
              out:write(c)
              copied = copied + #c
              if copied == 8 * 1048576 then s:cancel() end
            end
          end)
        end)
      end)
      assert.equal(8 * 1048576, copied)
      assert.equal(copied, fs.stat(dir .. "/part.bin").size)
      assert.equal(fds, helpers.open_fds())
    end))
end)

describe("dogfood3: a total timeout on a stream read slowly", function()
  it("fails the transfer at the deadline; the bytes taken before are handed over first; corio.timeout bounds the consumer",
    cb.timeout(30, function()
      local client = http.client { base_url = base }
      corio.defer(function() client:close() end)
      local url = "/file/5000000?rate=65536&tick=0.001&k=" .. run_id
      local t0 = corio.now()
      local n, at_deadline = 0, nil
      local err = helpers.catch(client.stream, client, "GET", url, { timeout = { total = 0.5 } },
        function(r)
          for chunk in r:iter_bytes() do
            n = n + #chunk
            if not at_deadline and corio.now() - t0 >= 0.5 then at_deadline = n end
            corio.sleep(0.02)
          end
        end)
      assert.equal("timeout", err.kind)
      assert.equal("total", err.phase)
      assert.matches("total timeout (0.5 s) expired", err.message, 1, true)
      -- handed over after the deadline: at most what one read had taken
      assert.is_true(n - (at_deadline or n) <= 1100000, "after the deadline: " .. (n - (at_deadline or n)))
      assert.equal(0, client:stats().in_flight)
      -- corio.timeout around the consumer stops it at the deadline itself
      t0 = corio.now()
      err = helpers.catch(corio.timeout, 0.5, client.stream, client, "GET", url, function(r)
        for _ in r:iter_bytes() do corio.sleep(0.02) end
      end)
      assert.equal("timeout", err.kind)
      assert.is_true(corio.now() - t0 < 0.6, "took " .. (corio.now() - t0))
      assert.equal(0, client:stats().in_flight)
      assert.equal(200, client:get("/file/10?k=" .. run_id).status)
    end))

  it("a consumer that never lets the loop run: curl's own timer fires, with the same message",
    cb.timeout(30, function()
      local client = http.client { base_url = base }
      corio.defer(function() client:close() end)
      local url = "/file/5000000?rate=65536&tick=0.001&k=" .. run_id
      for _, hold in ipairs({ 0.005, 0.02 }) do
        local err = helpers.catch(client.stream, client, "GET", url, { timeout = { total = 0.3 } },
          function(r) for _ in r:iter_bytes() do helpers.hold(hold) end end)
        assert.equal("timeout", err.kind)
        assert.equal("total", err.phase)
        -- was curl's "Operation timed out after 509 milliseconds with ..."
        assert.equal("GET " .. base .. url .. ": total timeout (0.3 s) expired", err.message)
      end
      assert.equal(0, client:stats().in_flight)
    end))
end)
