-- dogfood_spec.lua: corio used the way its users write programs after
-- reading the docs (README, getting-started, api, http, coming-from-python):
-- a crawler with retries, deadlines and a cancel midway; a channel
-- pipeline; a resumable streaming download; to_thread work beside I/O and
-- generators that call corio. Each program is a test under a deadline, so
-- a hang fails it. The HTTP server is tests/http/dogfood_server.py, started
-- here on 127.0.0.1; nothing reaches the network.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local cb = require("corio.busted")
local http = require("corio.http")
local fs = require("corio.fs")

local base, stop_server
-- every run asks the server for paths of its own (its fault counters are
-- per path and query)
local run_id = tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))

setup(function()
  base, stop_server = helpers.http_server("--lifetime 280", nil,
                                          "dogfood_server.py")
end)
teardown(function() if stop_server then stop_server() end end)

-- byte i (from 0) of the server's /file/<n> bodies
local function expected_byte(i) return (i * 7 + math.floor(i / 251)) % 256 end

local function check_file_bytes(data, size)
  assert.equal(size, #data, "file size")
  for i = 0, size - 1, 509 do
    if data:byte(i + 1) ~= expected_byte(i) then
      error(("byte %d is %d, expected %d"):format(i, data:byte(i + 1), expected_byte(i)), 2)
    end
  end
  assert.equal(expected_byte(size - 1), data:byte(size), "the last byte")
end

local function hits(client)
  return client:get("/hits"):raise_for_status():json()
end

describe("dogfood: a crawler", function()
  local dir, rmdir, client
  before_each(function()
    dir, rmdir = helpers.temp_dir("crawl")
    client = http.client { base_url = base, timeout = { connect = 1, read = 0.5 } }
  end)
  after_each(function()
    client:close()
    rmdir()
  end)

  -- a GET with a per-try deadline, retried with backoff on 5xx, on
  -- timeouts and on broken connections; anything else is raised
  local function get_with_retries(path, tries, log)
    local delay = 0.02
    for attempt = 1, tries do
      local ok, r = pcall(corio.timeout, 1, client.get, client, path)
      if ok and r.status < 500 then return r, attempt end
      if not ok then
        if corio.is_cancelled(r) then error(r, 0) end
        if r.kind ~= "timeout" and r.kind ~= "network" then error(r, 0) end
        log[#log + 1] = path .. " " .. r.kind
      else
        log[#log + 1] = path .. " " .. r.status
      end
      if attempt == tries then
        error(corio.new_error("gave_up", "gave up on " .. path, { last = r }), 0)
      end
      corio.sleep(delay)
      delay = delay * 2
    end
  end

  it("fetches 24 pages 4 at a time, retrying 503s, hangs and resets, within a total deadline",
    cb.timeout(20, function()
      local paths = {}
      for i = 1, 24 do
        local q = "?r=" .. run_id
        if i % 6 == 0 then q = q .. "&fail=2&mode=503"
        elseif i % 6 == 1 then q = q .. "&fail=1&mode=hang&d=3"
        elseif i % 6 == 2 then q = q .. "&fail=1&mode=reset" end
        paths[i] = "/page/" .. i .. q
      end
      local log, running, most = {}, 0, 0
      local done, sizes = corio.move_on_after(15, corio.map, paths, function(p, i)
        running = running + 1
        most = math.max(most, running)
        corio.defer(function() running = running - 1 end)
        local r, attempts = get_with_retries(p, 4, log)
        fs.write_file(dir .. "/" .. i .. ".txt", r:text())
        return attempts
      end, { limit = 4 })
      assert.is_true(done, "the crawl missed its total deadline")
      assert.equal(4, most)
      for i = 1, 24 do
        assert.equal(string.rep("page " .. i .. "\n", 100), fs.read_file(dir .. "/" .. i .. ".txt"))
        if i % 6 == 0 then assert.equal(3, sizes[i]) end
        if i % 6 == 1 then assert.equal(2, sizes[i]) end
      end
      local n = hits(client)
      for i = 6, 24, 6 do assert.equal(3, n[paths[i]], paths[i]) end
      assert.equal(0, client:stats().in_flight)
    end))

  -- An HTTP error (or any corio error whose traceback was taken before it
  -- left its task: corio.http takes it where it makes the error, a scope
  -- body's handler where it is raised) lost the "(task N spawned at ...)"
  -- line of the task it ended: the traceback of a crawl under a limit
  -- showed corio's internals and not where the crawl was started.
  it("a failed page ends the crawl with a traceback naming where the crawl started",
    cb.timeout(10, function()
      local function get(p) return client:get(p):raise_for_status():text() end
      local paths = { "/page/1", "/nope", "/page/3" }
      local ok, err = pcall(corio.map, paths, get, { limit = 2 })
      local map_line = debug.getinfo(1, "l").currentline - 1
      assert.is_false(ok)
      assert.equal("status", err.kind)
      assert.matches("spawned at [^\n]*dogfood_spec.lua:" .. map_line, err.traceback)
      local err2 = helpers.catch(corio.scope, function(s)
        s:spawn(function()
          corio.scope(function() client:get("/nope"):raise_for_status() end)
        end)
        corio.sleep(5)
      end)
      assert.equal("status", err2.kind)
      assert.matches("spawned at [^\n]*dogfood_spec.lua:%d+%)", err2.traceback)
      -- added once: the error crossed two task boundaries (the spawned
      -- task's and the test's)
      local _, n = err2.traceback:gsub("spawned at", "")
      assert.equal(1, n)
    end))

  it("gives up after its tries with an error that names the path and the last failure",
    cb.timeout(10, function()
      local p = "/page/1?r=" .. run_id .. "&fail=99&mode=503"
      local err = helpers.catch(get_with_retries, p, 3, {})
      assert.equal("gave_up", err.kind)
      assert.matches("gave up on /page/1", err.message, 1, true)
      assert.equal(503, err.last.status)
    end))

  it("is cancelled midway (as by Ctrl-C): no task, transfer or descriptor left; finished files whole, partial ones removed",
    cb.timeout(20, function()
      client:close()                     -- a client holds two fds (curl's wakeup pair)
      local fds = helpers.open_fds()
      client = http.client { base_url = base, timeout = { connect = 1, read = 0.5 } }
      local tasks = #corio.tasks()
      local started, finished = 0, 0
      local function download(path, dest)
        local tmp = dest .. ".part"
        local complete = false
        -- cleanup that blocks must be shielded: it runs in a cancelled scope
        corio.defer(function()
          if not complete then corio.shield(fs.remove, tmp) end
        end)
        fs.with_open(tmp, "w", function(f)
          client:stream("GET", path, function(r)
            r:raise_for_status()
            for chunk in r:iter_bytes() do f:write(chunk) end
          end)
        end)
        fs.rename(tmp, dest)
        complete = true
      end
      local items = {}
      for i = 1, 8 do items[i] = i end
      corio.scope(function(s)
        s:spawn(function()
          corio.map(items, function(i)
            started = started + 1
            -- the first two are small and finish; the rest trickle
            local path = i <= 2 and "/file/5000" or "/file/400000?rate=4096&tick=0.02"
            download(path, dir .. "/f" .. i)
            finished = finished + 1
          end, { limit = 3 })
        end)
        while finished < 2 do corio.sleep(0.01) end
        corio.sleep(0.1)
        s:cancel()                       -- what SIGINT does to the root task
      end)
      assert.equal(2, finished)
      assert.is_true(started >= 3 and started < 8, "started " .. started)
      assert.equal(tasks, #corio.tasks())
      assert.equal(0, client:stats().in_flight)
      local names = {}
      for name in fs.scandir(dir) do names[#names + 1] = name end
      table.sort(names)
      assert.same({ "f1", "f2" }, names)
      check_file_bytes(fs.read_file(dir .. "/f1"), 5000)
      -- the client still works after the cancel
      assert.equal(200, client:get("/page/1"):raise_for_status().status)
      client:close()                     -- its pooled connections are fds too
      helpers.assert_fds_back(fds)
    end))
end)

-- Many tasks writing result lines to one file, as a crawler does: the
-- second task to need a flush while another's was in flight got EBUSY,
-- and the crawl failed. Tasks now take turns on a file (FIFO), as threads
-- sharing a Python file object do.
describe("dogfood: one results file shared by the crawler's tasks", function()
  local dir, rmdir
  before_each(function() dir, rmdir = helpers.temp_dir("shared") end)
  after_each(function() rmdir() end)

  it("200 tasks, 8 at a time, write 50 lines each: every line there once, none torn",
    cb.timeout(20, function()
      local p = dir .. "/results.txt"
      local out = fs.open(p, "w", { buffer_size = 4096 })
      local items = {}
      for i = 1, 200 do items[i] = i end
      corio.map(items, function(i)
        for j = 1, 50 do
          out:write(("item %d line %d %s\n"):format(i, j, string.rep("x", 100)))
          if j % 10 == 0 then corio.yield() end
        end
      end, { limit = 8 })
      out:close()
      local seen, n = {}, 0
      for line in fs.lines(p) do
        local i, j = line:match("^item (%d+) line (%d+) x+$")
        assert.is_not_nil(i, "torn line: " .. line)
        assert.is_nil(seen[line], "twice: " .. line)
        seen[line] = true
        n = n + 1
      end
      assert.equal(200 * 50, n)
    end))

  it("two readers share the lines of one file, each line read once", cb.timeout(20, function()
    local p = dir .. "/in.txt"
    local lines = {}
    for i = 1, 20000 do lines[i] = "line " .. i end
    fs.write_file(p, table.concat(lines, "\n") .. "\n")
    local f = fs.open(p, "r", { buffer_size = 4096 })
    local got, counts = {}, { 0, 0 }
    corio.scope(function(s)
      for r = 1, 2 do
        s:spawn(function()
          for line in f:lines() do
            got[#got + 1] = line
            counts[r] = counts[r] + 1
            if #got % 100 == 0 then corio.yield() end
          end
        end)
      end
    end)
    f:close()
    assert.equal(20000, #got)
    local seen = {}
    for _, l in ipairs(got) do
      assert.is_nil(seen[l])
      seen[l] = true
    end
    assert.is_true(counts[1] > 0 and counts[2] > 0)
  end))

  it("a task cancelled while it waits for its turn lets the others go on", cb.timeout(20, function()
    local p = dir .. "/c.txt"
    local f = fs.open(p, "w", { buffer_size = 4096 })
    local chunk = string.rep("y", 1000) .. "\n"
    local victims, done = {}, 0
    corio.scope(function(s)
      for k = 1, 6 do
        local t = s:spawn(function()
          for _ = 1, 200 do f:write(chunk) end
          done = done + 1
        end)
        if k % 2 == 0 then victims[#victims + 1] = t end
      end
      corio.sleep(0)
      for _, t in ipairs(victims) do t:cancel() end
    end)
    f:close()
    assert.is_true(done >= 3, "done " .. done)
    local size = fs.stat(p).size
    assert.equal(0, size % #chunk)
    assert.is_true(size >= 3 * 200 * #chunk)
  end))

  it("a file closed while another task waits for its turn: that task gets kind closed",
    cb.timeout(10, function()
      local p = dir .. "/d.txt"
      local f = fs.open(p, "w", { buffer_size = 4096 })
      local errs = {}
      local function writer(c)
        local ok, e = pcall(function()
          for _ = 1, 100 do f:write(string.rep(c, 4096)) end
        end)
        if not ok then errs[#errs + 1] = e end
      end
      corio.scope(function(s)
        s:spawn(writer, "z")
        s:spawn(function()
          corio.sleep(0)
          f:close()
        end)
        s:spawn(function()
          corio.sleep(0)
          writer("w")
        end)
      end)
      assert.is_true(#errs >= 1)
      for _, e in ipairs(errs) do assert.equal("closed", e.kind) end
      assert.equal("closed file", fs.type(f))
    end))
end)

describe("dogfood: a channel pipeline", function()
  -- producers -> ch1 -> workers -> ch2 -> sink; each stage closes its
  -- output when all its tasks ended (a nested scope per stage)
  local function pipeline(n_prod, per_prod, n_work, cap, work)
    local ch1, ch2 = corio.channel(cap), corio.channel(cap)
    local out, sent, most_ahead = {}, 0, 0
    corio.scope(function(s)
      s:spawn(function()
        corio.scope(function(ps)
          for p = 1, n_prod do
            ps:spawn(function()
              for i = 1, per_prod do
                ch1:send(p * 1000 + i)
                sent = sent + 1
                most_ahead = math.max(most_ahead, sent - #out)
              end
            end)
          end
        end)
        ch1:close()
      end)
      s:spawn(function()
        corio.scope(function(ws)
          for _ = 1, n_work do
            ws:spawn(function()
              for v in ch1:iter() do ch2:send(work(v)) end
            end)
          end
        end)
        ch2:close()
      end)
      s:spawn(function()
        for v in ch2:iter() do
          out[#out + 1] = v
          corio.sleep(0.001)               -- a slow sink
        end
      end)
    end)
    return out, most_ahead, sent
  end

  it("passes every item exactly once, with backpressure bounding the producers",
    cb.timeout(10, function()
      local out, most_ahead = pipeline(3, 40, 4, 2, function(v)
        corio.sleep(0.0005)
        return v * 2
      end)
      assert.equal(120, #out)
      local seen = {}
      for _, v in ipairs(out) do
        assert.is_nil(seen[v], "duplicate " .. v)
        seen[v] = true
      end
      for p = 1, 3 do
        for i = 1, 40 do assert.is_true(seen[(p * 1000 + i) * 2]) end
      end
      -- in flight at most: ch1's buffer, one item in each worker, ch2's
      -- buffer, and the item the sink holds, plus the sends being handed over
      assert.is_true(most_ahead <= 2 + 4 + 2 + 1 + 3, "producers ran ahead by " .. most_ahead)
    end))

  it("an error in one worker cancels the other stages and is raised",
    cb.timeout(10, function()
      local tasks = #corio.tasks()
      local err = helpers.catch(pipeline, 3, 1000, 4, 2, function(v)
        corio.sleep(0.001)
        if v == 2007 then error("cannot handle item " .. v) end
        return v
      end)
      assert.matches("cannot handle item 2007", tostring(err.message or err), 1, true)
      assert.equal(tasks, #corio.tasks())
    end))

  it("close() with receivers and senders waiting: receivers end, senders fail with kind closed",
    cb.timeout(5, function()
      local ch = corio.channel(1)
      local ended = 0
      local err = helpers.catch(corio.scope, function(s)
        for _ = 1, 2 do s:spawn(function() for _ in ch:iter() do end ended = ended + 1 end) end
        corio.sleep(0.01)
        ch:send(1)
        local full = corio.channel(0)
        s:spawn(function() full:send("x") end)
        corio.sleep(0.01)
        ch:close()
        full:close()
      end)
      assert.equal(2, ended)
      assert.equal("closed", err.kind)
      assert.matches("closed while the send waited", err.message, 1, true)
    end))
end)

describe("dogfood: a resumable streaming download", function()
  local dir, rmdir, client
  before_each(function()
    dir, rmdir = helpers.temp_dir("dl")
    client = http.client { base_url = base, timeout = { read = 2 } }
  end)
  after_each(function()
    client:close()
    rmdir()
  end)

  local SIZE = 600000
  local URL = "/file/" .. SIZE .. "?rate=16384&tick=0.005"

  -- download to dest, resuming from what is already there; progress(got,
  -- total) after each chunk; a slow consumer sleeps per chunk
  local function download(dest, progress)
    local have = fs.exists(dest) and fs.stat(dest).size or 0
    local headers = {}
    if have > 0 then headers.Range = "bytes=" .. have .. "-" end
    fs.with_open(dest, have > 0 and "a" or "w", function(f)
      client:stream("GET", URL, { headers = headers }, function(r)
        r:raise_for_status()
        if have > 0 then
          assert.equal(206, r.status)
          assert.equal(("bytes %d-%d/%d"):format(have, SIZE - 1, SIZE), r.headers["content-range"])
        end
        local total = have + tonumber(r.headers["content-length"])
        local got = have
        for chunk in r:iter_bytes() do
          f:write(chunk)
          got = got + #chunk
          progress(got, total)
          corio.sleep(0.001)
        end
      end)
    end)
  end

  it("is cancelled halfway, keeps what it wrote, and resumes with a Range header",
    cb.timeout(20, function()
      local dest = dir .. "/big.bin"
      local seen, total_seen = 0, nil
      local half = corio.event()
      local done = corio.move_on_after(15, function()
        corio.scope(function(s)
          s:spawn(download, dest, function(got, total)
            seen, total_seen = got, total
            if got >= total / 2 then half:set() end
          end)
          half:wait()
          s:cancel()
        end)
      end)
      assert.is_true(done)
      assert.equal(SIZE, total_seen)
      local kept = fs.stat(dest).size
      -- with_open writes its buffer out under a shield: nothing received is lost
      assert.equal(seen, kept)
      assert.is_true(kept >= SIZE / 2 and kept < SIZE, "kept " .. kept)
      local resumed_from
      download(dest, function(got, total)
        resumed_from = resumed_from or got
        assert.equal(SIZE, total)
      end)
      assert.is_true(resumed_from > kept)
      check_file_bytes(fs.read_file(dest), SIZE)
      assert.equal(0, client:stats().in_flight)
    end))

  it("reads JSON lines with a stall detector around each line; a cancelled read loses no line",
    cb.timeout(10, function()
      local seqs, stalls = {}, 0
      client:stream("GET", "/events?n=8&d=0.005&k=4&p=0.4", function(r)
        local next_line = r:iter_lines()
        while true do
          local done, line = corio.move_on_after(0.1, next_line)
          if not done then
            stalls = stalls + 1
          elseif line == nil then
            break
          else
            seqs[#seqs + 1] = require("cjson").decode(line).seq
          end
        end
      end)
      assert.same({ 1, 2, 3, 4, 5, 6, 7, 8 }, seqs)
      assert.is_true(stalls >= 1, "no stall seen")
      assert.equal(0, client:stats().in_flight)
    end))

  it("a Range past the end is a status error naming the URL", cb.timeout(5, function()
    local err = helpers.catch(function()
      client:get("/file/100", { headers = { Range = "bytes=100-" } }):raise_for_status()
    end)
    assert.equal("status", err.kind)
    assert.equal(416, err.response.status)
    assert.matches("/file/100", err.message, 1, true)
  end))
end)

describe("dogfood: to_thread beside I/O, and generators that call corio", function()
  local client
  before_each(function() client = http.client { base_url = base } end)
  after_each(function() client:close() end)

  local function checksum(s)
    local x = 0
    for i = 1, #s do x = (x * 31 + s:byte(i)) % 4294967296 end
    return x
  end

  it("hashes on workers while a ticker and HTTP requests go on", cb.timeout(20, function()
    local ticks = 0
    local sums, pages
    corio.scope(function(s)
      local ticker = s:spawn(function()
        while true do corio.sleep(0.002) ticks = ticks + 1 end
      end)
      local r = corio.gather({
        function()
          return corio.map({ 1, 2, 3, 4 }, function(i)
            return corio.to_thread(checksum, string.rep(string.char(64 + i), 3e6))
          end)
        end,
        function()
          return corio.map({ 1, 2, 3, 4, 5, 6 }, function(i)
            return client:get("/page/" .. i):text()
          end, { limit = 2 })
        end,
      })
      sums, pages = r[1], r[2]
      ticker:cancel()
    end)
    for i = 1, 4 do
      assert.equal(checksum(string.rep(string.char(64 + i), 1000)),
        corio.to_thread(checksum, string.rep(string.char(64 + i), 1000)))
      assert.is_number(sums[i])
    end
    for i = 1, 6 do assert.equal(string.rep("page " .. i .. "\n", 100), pages[i]) end
    assert.is_true(ticks > 5, "the loop was held: " .. ticks .. " ticks")
  end))

  -- fetch pages (4 at a time) -> count words on worker threads (3) -> two
  -- writers append to one file; fail_at: a page whose parse fails
  local function etl(dir, fail_at)
    local pages, parsed = corio.channel(4), corio.channel(4)
    local path = dir .. "/etl.txt"
    local written = 0
    fs.with_open(path, "w", function(out)
      corio.scope(function(s)
        s:spawn(function()
          local ids = {}
          for i = 1, 60 do ids[i] = i end
          corio.map(ids, function(i)
            pages:send({ i, client:get("/page/" .. i):text() })
          end, { limit = 4 })
          pages:close()
        end)
        s:spawn(function()
          corio.scope(function(ws)
            for _ = 1, 3 do
              ws:spawn(function()
                for p in pages:iter() do
                  local words = corio.to_thread(function(body, bad)
                    if bad then error("cannot parse page") end
                    local n = 0
                    for _ in body:gmatch("%S+") do n = n + 1 end
                    return n
                  end, p[2], p[1] == fail_at)
                  parsed:send({ p[1], words })
                end
              end)
            end
          end)
          parsed:close()
        end)
        for w = 1, 2 do
          s:spawn(function()
            for r in parsed:iter() do
              out:write(("%d %d writer%d\n"):format(r[1], r[2], w))
              written = written + 1
            end
          end)
        end
      end)
    end)
    return path, written
  end

  it("an ETL pipeline: HTTP, then to_thread, then two writers sharing one file",
    cb.timeout(30, function()
      local dir, rmdir = helpers.temp_dir("etl")
      corio.defer(rmdir)
      local path, written = etl(dir)
      assert.equal(60, written)
      local ids = {}
      for line in fs.lines(path) do
        local id, words = line:match("^(%d+) (%d+) writer[12]$")
        assert.is_not_nil(id, "bad line: " .. line)
        assert.equal("200", words)
        assert.is_nil(ids[id])
        ids[id] = true
      end
      local n = 0
      for _ in pairs(ids) do n = n + 1 end
      assert.equal(60, n)
    end))

  it("an ETL pipeline whose parse fails on one page: all stages stop, the file is closed",
    cb.timeout(30, function()
      local dir, rmdir = helpers.temp_dir("etl")
      corio.defer(rmdir)
      local tasks = #corio.tasks()
      local err = helpers.catch(etl, dir, 17)
      assert.equal("error", err.kind)
      assert.matches("cannot parse page", err.message, 1, true)
      assert.equal(tasks, #corio.tasks())
      assert.equal(0, client:stats().in_flight)
      -- what was written before the failure is in the file, in whole lines
      for line in fs.lines(dir .. "/etl.txt") do
        assert.matches("^%d+ 200 writer[12]$", line)
      end
    end))

  it("a coroutine.wrap generator fetches and writes lazily, also under a timeout inside it",
    cb.timeout(10, function()
      local dir, rmdir = helpers.temp_dir("gen")
      corio.defer(rmdir)
      local function pages(n)
        return coroutine.wrap(function()
          corio.timeout(5, function()
            for i = 1, n do
              local body = client:get("/page/" .. i):text()
              fs.write_file(dir .. "/" .. i, body)
              coroutine.yield(i, body)
            end
          end)
        end)
      end
      local got = {}
      for i, body in pages(4) do
        got[i] = corio.to_thread(checksum, body)
        assert.equal(body, fs.read_file(dir .. "/" .. i))
      end
      assert.equal(4, #got)
      -- resumed by hand to its end, it leaves its timeout scope (else that
      -- scope would be abandoned, and this test's body would raise)
      local g = pages(2)
      assert.same({ 1, 2, nil }, { g(), g(), g() })
      -- a generator with no scope inside may be shared by tasks in turn (one
      -- with a scope inside may not: the scope would be left in the task
      -- that last resumed it, as trio forbids leaving a cancel scope in
      -- another task)
      local lines = coroutine.wrap(function()
        for i = 1, 3 do coroutine.yield((client:get("/page/" .. i):text():match("[^\n]+"))) end
      end)
      local a = lines()
      local b = corio.spawn(function() return lines() end):join()
      local c = lines()
      assert.same({ "page 1", "page 2", "page 3" }, { a, b, c })
    end))

  it("an abandoned generator's open scope: the error names where the generator is suspended",
    cb.timeout(5, function()
      local g
      local err = helpers.catch(corio.scope, function()
        g = coroutine.wrap(function()
          corio.move_on_after(1, function()
            for i = 1, 3 do corio.sleep(0.001) coroutine.yield(i) end
          end)
        end)
        assert.equal(1, g())
      end)
      assert.matches("was still open", err.message, 1, true)
      assert.matches("the coroutine is suspended at .*dogfood_spec.lua:%d+", err.message)
    end))
end)
