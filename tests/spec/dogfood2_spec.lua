-- dogfood2_spec.lua: round 2 of corio used the way users coming from
-- trio/asyncio/httpx/aiofiles write programs after reading the docs:
-- a rate-limited API client (semaphore + token bucket, per-request
-- timeouts, retries with backoff, gather with return_errors), the same
-- client's retry logic tested on a mock transport under autojump, a pub/sub
-- fan-out over channels (slow subscribers, unsubscribe by cancel, close
-- propagation), a log tailer on a growing (and rotated) file, and a worker
-- pool with a deadline that flushes its results. The SIGINT form of the
-- worker pool runs as `corio script.lua` in tests/cli/dogfood2.sh; the C
-- host embedding corio is tests/c/test_dogfood_host.c. Round 1 is
-- dogfood_spec.lua. The HTTP server is tests/http/dogfood_server.py.

local corio = require("corio")
local helpers = require("tests.spec.helpers")
local cb = require("corio.busted")
local http = require("corio.http")
local fs = require("corio.fs")
local testing = require("corio.testing")

local base, stop_server
local run_id = tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))

setup(function()
  base, stop_server = helpers.http_server("--lifetime 280", nil,
                                          "dogfood_server.py")
end)
teardown(function() if stop_server then stop_server() end end)

-- A token bucket: `rate` tokens a second, at most `burst` saved up. take()
-- waits for a token; the lock makes waiters queue in order (FIFO).
local function token_bucket(rate, burst)
  local tokens, last = burst, corio.now()
  local lock = corio.lock()
  local taken = {}
  return function()
    lock:with(function()
      while true do
        local now = corio.now()
        tokens = math.min(burst, tokens + (now - last) * rate)
        last = now
        if tokens >= 1 then
          tokens = tokens - 1
          taken[#taken + 1] = now
          return
        end
        corio.sleep((1 - tokens) / rate)
      end
    end)
  end, taken
end

-- An API client as a user writes one: at most `limit` requests at once,
-- `rate` a second, a deadline per try, retries with exponential backoff on
-- 5xx, timeouts and broken connections; anything else is raised at once.
local function api_client(client, opts)
  local sem = corio.semaphore(opts.limit)
  local take, taken = token_bucket(opts.rate, opts.burst)
  local attempts = {}
  local function call(path)
    local delay = opts.backoff
    for attempt = 1, opts.tries do
      take()
      attempts[path] = attempt
      local ok, r = pcall(sem.with, sem, corio.timeout, opts.per_try, client.get, client, path)
      if ok and r.status < 500 then return r:raise_for_status():text() end
      if not ok then
        if corio.is_cancelled(r) then error(r, 0) end
        if r.kind ~= "timeout" and r.kind ~= "network" then error(r, 0) end
      end
      if attempt == opts.tries then
        if ok then r:raise_for_status() end
        error(r, 0)
      end
      corio.sleep(delay)
      delay = delay * 2
    end
  end
  return call, attempts, taken, sem
end

describe("dogfood2: a rate-limited API client", function()
  it("20 calls, 4 at a time and 40 a second, retrying 503s, hangs and resets; gather returns the failures",
    cb.timeout(30, function()
      local client = http.client { base_url = base, timeout = 2 }
      local call, attempts, taken, sem = api_client(client, {
        limit = 4, rate = 40, burst = 4, tries = 4, per_try = 0.3, backoff = 0.01 })
      local modes = { "503", "hang", "503", "reset" }
      local paths, fns = {}, {}
      for i = 1, 20 do
        -- every fifth path fails more often than the client tries
        local fail = (i % 5 == 0) and 9 or (i % 3)
        paths[i] = ("/page/%d?fail=%d&mode=%s&d=1&r=%s"):format(i, fail, modes[i % 4 + 1], run_id)
        fns[i] = function() return call(paths[i]) end
      end
      local t0 = corio.now()
      local results, errors = corio.gather(fns, { return_errors = true })
      local elapsed = corio.now() - t0
      for i = 1, 20 do
        local fail = (i % 5 == 0) and 9 or (i % 3)
        if fail >= 4 then
          assert.is_nil(results[i])
          local e = errors[i]
          assert.is_truthy(e, "call " .. i .. " should have failed")
          local mode = modes[i % 4 + 1]
          local kind = ({ ["503"] = "status", hang = "timeout", reset = "network" })[mode]
          assert.equal(kind, e.kind, "call " .. i .. ": " .. tostring(e.message))
          if kind ~= "timeout" then
            assert.is_truthy(e.message:find(paths[i], 1, true), "the error names the URL: " .. e.message)
          end
          assert.equal(4, attempts[paths[i]])
        else
          assert.is_nil(errors[i], errors[i] and errors[i].message)
          assert.equal(("page %d\n"):format(i):rep(100), results[i])
          if modes[i % 4 + 1] == "reset" then
            -- libcurl sends a GET again itself when a reused connection
            -- is reset before any byte of the answer: fewer tries here
            assert.is_true(attempts[paths[i]] <= fail + 1, paths[i])
          else
            assert.equal(fail + 1, attempts[paths[i]], paths[i])
          end
        end
      end
      -- the bucket: in any span of time T, at most burst + rate * T tokens
      -- (a fifth of a token of slack for the clock's resolution)
      for j = 1, #taken do
        for i = 1, j - 1 do
          assert.is_true(j - i + 1 <= 4 + 40 * (taken[j] - taken[i]) + 0.2,
            ("tokens %d..%d in %.4f s"):format(i, j, taken[j] - taken[i]))
        end
      end
      assert.is_true(#taken > 20)
      assert.is_true(elapsed >= (#taken - 4) / 40 - 0.01)
      assert.equal(4, sem.available)
      assert.equal(0, client:stats().in_flight)
      client:close()
    end))

  -- The client retries only what it knows is safe to retry. A POST whose
  -- keep-alive connection the server reset after reading the request was
  -- sent again by libcurl on a fresh connection (curl retries a reused
  -- connection that gave no byte of a response): the server acted on it
  -- twice (a payment made twice), where httpx raises and sends it once.
  it("a POST on a reused connection that the server resets is not sent twice; a GET is sent again",
    cb.timeout(10, function()
      local client = http.client { base_url = base, timeout = 2 }
      local function hits_of(path) return client:get("/hits"):json()[path] end
      assert.equal(200, client:get("/page/0?warm=" .. run_id).status)  -- a connection to reuse
      local post = "/page/1?fail=1&mode=reset&post=" .. run_id
      local err = helpers.catch(client.post, client, post, { json = { pay = 100 } })
      assert.equal("network", err.kind)
      assert.is_truthy(err.message:find("POST " .. base .. post, 1, true), err.message)
      assert.is_truthy(err.message:find("not sent again", 1, true), err.message)
      assert.equal(1, hits_of(post))
      -- PATCH is not idempotent either
      local patch = "/page/1?fail=1&mode=reset&patch=" .. run_id
      assert.equal("network", helpers.catch(client.patch, client, patch, { body = "x" }).kind)
      assert.equal(1, hits_of(patch))
      -- idempotent methods are sent again, as curl does: the second try answers
      local get = "/page/2?fail=1&mode=reset&get=" .. run_id
      assert.equal(200, client:get(get).status)
      assert.equal(2, hits_of(get))
      local put = "/page/3?fail=1&mode=reset&put=" .. run_id
      assert.equal(200, client:put(put, { body = "x" }).status)
      assert.equal(2, hits_of(put))
      -- and the client goes on working
      assert.equal(200, client:post("/page/4?post-ok=" .. run_id, { body = "y" }).status)
      client:close()
    end))

  it("cancelled midway (a deadline around the whole batch): nothing left in flight, the client still works",
    cb.timeout(20, function()
      local client = http.client { base_url = base, timeout = 2 }
      local tasks = #corio.tasks()
      local call, _, _, sem = api_client(client, {
        limit = 3, rate = 100, burst = 3, tries = 3, per_try = 5, backoff = 0.01 })
      local fns = {}
      for i = 1, 10 do
        fns[i] = function() return call(("/slow/%d?d=0.2&r=%s"):format(i, run_id)) end
      end
      local done = corio.move_on_after(0.3, corio.gather, fns, { return_errors = true })
      assert.is_false(done)
      assert.equal(3, sem.available)
      assert.equal(0, client:stats().in_flight)
      assert.equal(tasks, #corio.tasks())
      assert.equal(200, client:get("/page/1"):raise_for_status().status)
      client:close()
    end))
end)

-- The same retry logic against httpx's MockTransport equivalent, on the
-- virtual clock: minutes of backoff pass at once. A transport answers in
-- the calling task and may block; the client's `timeout` options do not
-- apply to it (as in httpx), so the per-try deadline is corio.timeout.
describe("dogfood2: the client's retry logic on a mock transport", function()
  it("honours Retry-After, retries timeouts, gives up with the last error", cb.timeout(10, function()
    local hits = {}
    local client = http.client { base_url = "http://api.test", transport = function(req)
      local id = tonumber(req.url:match("/item/(%d+)"))
      hits[id] = (hits[id] or 0) + 1
      if id % 3 == 0 and hits[id] < 3 then
        return { status = 503, headers = { ["Retry-After"] = "30" }, body = "busy" }
      end
      if id % 4 == 0 and hits[id] < 2 then corio.sleep(3600) end  -- hangs
      if id == 7 then return { status = 500, body = "broken" } end
      corio.sleep(0.1)
      return { status = 200, headers = { ["content-type"] = "application/json" },
               body = ('{"id": %d}'):format(id) }
    end }
    local function call(path)
      local delay = 1
      for attempt = 1, 4 do
        local ok, r = pcall(corio.timeout, 10, client.get, client, path)
        if ok and r.status < 500 then return r:json().id end
        if not ok and r.kind ~= "timeout" then error(r, 0) end
        if attempt == 4 then
          if ok then r:raise_for_status() end
          error(r, 0)
        end
        corio.sleep(ok and tonumber(r.headers["retry-after"]) or delay)
        delay = delay * 2
      end
    end
    local t0, real0 = corio.now(), helpers.mono()
    local items = {}
    for i = 1, 12 do items[i] = "/item/" .. i end
    local results, errors = testing.autojump(corio.map, items, call,
      { limit = 4, return_errors = true })
    local elapsed = corio.now() - t0
    for i = 1, 12 do
      if i == 7 then
        assert.equal("status", errors[i].kind)
        assert.equal(500, errors[i].response.status)
        assert.equal(4, hits[i])
      else
        assert.is_nil(errors[i], errors[i] and errors[i].message)
        assert.equal(i, results[i])
      end
    end
    assert.equal(3, hits[3])   -- two 503s, then the answer
    assert.equal(2, hits[4])   -- one hang cut by the deadline
    assert.equal(3, hits[12])  -- 503, 503 (hits < 3), then a success
    -- virtual time: 60 s of Retry-After and 10 s deadlines, in no real time
    assert.is_true(elapsed >= 60, "elapsed " .. elapsed)
    assert.is_true(helpers.mono() - real0 < 5, "took real time")
    client:close()
  end))
end)

-- A broker: publish() hands a value to every subscriber, giving each a
-- grace to take it; a subscriber that is too slow misses that value, one
-- whose channel was closed (it unsubscribed) is dropped.
local function broker(grace)
  local subs, order = {}, {}
  local b = { dropped = {} }
  function b.subscribe(capacity)
    local ch = corio.channel(capacity)
    subs[ch] = true
    order[#order + 1] = ch
    return ch
  end
  function b.unsubscribe(ch)
    subs[ch] = nil
    ch:close()
  end
  function b.publish(v)
    local live = {}
    for _, ch in ipairs(order) do if subs[ch] then live[#live + 1] = ch end end
    local _, errors = corio.map(live, function(ch)
      if not corio.move_on_after(grace, ch.send, ch, v) then
        b.dropped[ch] = (b.dropped[ch] or 0) + 1
      end
    end, { return_errors = true })
    for i, ch in ipairs(live) do
      if errors[i] then
        if errors[i].kind ~= "closed" then error(errors[i], 0) end
        subs[ch] = nil
      end
    end
  end
  function b.close()
    for _, ch in ipairs(order) do if subs[ch] then ch:close() end end
    subs = {}
  end
  function b.count()
    local n = 0
    for _ in pairs(subs) do n = n + 1 end
    return n
  end
  return b
end

describe("dogfood2: a pub/sub fan-out", function()
  it("one producer, five subscribers: a slow one misses values, one unsubscribes by cancel, close ends the rest",
    cb.timeout(10, function()
      local tasks = #corio.tasks()
      testing.autojump(function()
        local b = broker(0.05)
        local got, closed, chans = {}, {}, {}
        corio.scope(function(s)
          local subscribers = {}
          for i = 1, 5 do
            local ch = b.subscribe(i == 5 and 0 or 2)
            chans[i] = ch
            got[i] = {}
            subscribers[i] = s:spawn(function()
              -- unsubscribing is cleanup: it runs however the task ends
              corio.defer(function() b.unsubscribe(ch) end)
              for v in ch:iter() do
                got[i][#got[i] + 1] = v
                if i == 5 then corio.sleep(0.2) end          -- slow
              end
              closed[i] = true
            end)
          end
          s:spawn(function()
            for v = 1, 30 do
              b.publish(v)
              if v == 10 then subscribers[2]:cancel() end  -- unsubscribe by cancel
              corio.sleep(0.01)
            end
            b.close()
          end)
        end)
        for _, i in ipairs({ 1, 3, 4 }) do
          assert.equal(30, #got[i])
          for v = 1, 30 do assert.equal(v, got[i][v]) end
          assert.is_true(closed[i])
        end
        -- the cancelled subscriber took 1..10, never saw the close
        assert.equal(10, #got[2])
        assert.is_nil(closed[2])
        assert.is_true(chans[2].closed)
        -- the slow one: fewer values, in order, none twice, the rest dropped
        assert.is_true(#got[5] < 30 and #got[5] > 0)
        for k = 2, #got[5] do assert.is_true(got[5][k] > got[5][k - 1]) end
        assert.equal(30, #got[5] + b.dropped[chans[5]])
        assert.is_true(closed[5])
        assert.equal(0, b.count())
      end)
      assert.equal(tasks, #corio.tasks())
    end))

  it("an error in a subscriber cancels the producer and the others, and the scope raises it",
    cb.timeout(10, function()
      local b = broker(1)
      local producer_cleanup = false
      local err = helpers.catch(corio.scope, function(s)
        for i = 1, 3 do
          local ch = b.subscribe(1)
          s:spawn(function()
            corio.defer(function() b.unsubscribe(ch) end)
            for v in ch:iter() do
              if i == 2 and v == 5 then error(corio.new_error("bad_message", "subscriber 2 cannot handle " .. v), 0) end
            end
          end)
        end
        s:spawn(function()
          corio.defer(function() producer_cleanup = true end)
          for v = 1, 1e6 do b.publish(v) end
        end)
      end)
      assert.equal("bad_message", err.kind)
      assert.equal("subscriber 2 cannot handle 5", err.message)
      assert.is_true(producer_cleanup)
      assert.equal(0, b.count())   -- every subscriber's defer unsubscribed it
    end))
end)

describe("dogfood2: a log tailer", function()
  local dir, rmdir
  before_each(function() dir, rmdir = helpers.temp_dir("tail") end)
  after_each(function() rmdir() end)

  -- follow `path` until the deadline: complete lines are upper-cased into
  -- `out`; a line still being written (no "\n" yet) is kept until its end
  -- comes; a rotated file (renamed, a new one made) is drained and the new
  -- one followed from its start
  local function tail(path, out_path, seconds)
    local n = 0
    local done = corio.move_on_after(seconds, function()
      fs.with_open(out_path, "w", function(out)
        local f = fs.open(path)
        local ino = fs.stat(path).ino
        corio.defer(function() corio.shield(f.close, f) end)
        local pending = ""
        local function drain()
          for piece in f:lines("L") do
            pending = pending .. piece
            if pending:sub(-1) == "\n" then
              out:write(pending:upper())
              n = n + 1
              pending = ""
            end
          end
        end
        while true do
          drain()
          local ok, st = pcall(fs.stat, path)
          if ok and st.ino ~= ino then
            drain()
            f:close()
            f, ino = fs.open(path), st.ino
          end
          corio.sleep(0.005)
        end
      end)
    end)
    return done, n
  end

  it("upper-cases a growing file line by line, partial lines and a rotation included, until its deadline",
    cb.timeout(10, function()
      -- the HTTP clients of the tests before close their sockets when
      -- collected: collect them first
      collectgarbage(); collectgarbage()
      local fds = helpers.open_fds()
      local path, out_path = dir .. "/app.log", dir .. "/app.upper"
      fs.write_file(path, "")
      local expected = {}
      local moved_on, lines
      corio.scope(function(s)
        s:spawn(function()
          local w = fs.open(path, "a")
          for i = 1, 60 do
            local line = ("line %d of the log"):format(i)
            if i % 10 == 0 then
              -- a line written in two goes, the reader may see half of it
              w:write(line:sub(1, 5)):flush()
              corio.sleep(0.02)
              w:write(line:sub(6), "\n"):flush()
            else
              w:write(line, "\n"):flush()
            end
            expected[#expected + 1] = line:upper()
            if i == 30 then           -- rotate: rename, then a new file
              w:close()
              fs.rename(path, path .. ".1")
              w = fs.open(path, "a")
            end
            corio.sleep(0.002)
          end
          w:close()
        end)
        s:spawn(function() moved_on, lines = tail(path, out_path, 2) end)
      end)
      assert.is_false(moved_on)
      assert.equal(60, lines)
      local got = {}
      for line in fs.lines(out_path) do got[#got + 1] = line end
      assert.same(expected, got)
      helpers.assert_fds_back(fds)
    end))
end)

describe("dogfood2: a worker pool with a deadline", function()
  local dir, rmdir
  before_each(function() dir, rmdir = helpers.temp_dir("pool") end)
  after_each(function() rmdir() end)

  it("the deadline cancels the pool; in-flight jobs run their defers; the results are flushed",
    cb.timeout(10, function()
      local out_path = dir .. "/results.txt"
      local started, cleaned, results = 0, 0, {}
      local jobs = corio.channel(4)
      corio.scope(function()
        corio.defer(function()
          -- flushing blocks, and the scope is cancelled: shield it
          corio.shield(fs.with_open, out_path, "w", function(f)
            for _, r in ipairs(results) do f:write(r, "\n") end
            f:write(("done %d started %d cleaned %d\n"):format(#results, started, cleaned))
          end)
        end)
        local finished = corio.move_on_after(0.25, function()
          corio.scope(function(s)
            s:spawn(function()
              for i = 1, 1000 do jobs:send(i) end
              jobs:close()
            end)
            for w = 1, 3 do
              s:spawn(function()
                for job in jobs:iter() do
                  corio.scope(function()       -- one job: its own body
                    started = started + 1
                    corio.defer(function() cleaned = cleaned + 1 end)
                    local sum = corio.to_thread(function(n)
                      local x = 0
                      for k = 1, n do x = x + k end
                      return x
                    end, job)
                    corio.sleep(0.02)
                    results[#results + 1] = ("worker %d job %d sum %d"):format(w, job, sum)
                  end)
                end
              end)
            end
          end)
        end)
        assert.is_false(finished)
      end)
      local lines = {}
      for line in fs.lines(out_path) do lines[#lines + 1] = line end
      local last = table.remove(lines)
      local n, st, cl = last:match("^done (%d+) started (%d+) cleaned (%d+)$")
      assert.is_truthy(n, last)
      n, st, cl = tonumber(n), tonumber(st), tonumber(cl)
      assert.equal(#lines, n)
      assert.is_true(n >= 6, "only " .. n .. " jobs done")
      -- every started job ran its defer, done or cut short
      assert.equal(st, cl)
      assert.is_true(st > n and st <= n + 3)
      for _, line in ipairs(lines) do
        local job, sum = line:match("job (%d+) sum (%d+)$")
        job = tonumber(job)
        assert.equal(job * (job + 1) / 2, tonumber(sum))
      end
    end))
end)

-- What a user coming from asyncio writes first. asyncio.wait_for(aw,
-- timeout) takes the awaitable first; corio.timeout(fn, 5) blamed its
-- second argument ("bad argument #2 to 'timeout' (function expected, got
-- number)") for the swap. It now names the order.
describe("dogfood2: asyncio habits", function()
  it("corio.timeout(fn, seconds) and move_on_after(fn, seconds) say the seconds come first", function()
    local function job() return 1 end
    local err = helpers.catch(corio.timeout, job, 5)
    assert.is_truthy(err:find("bad argument #1 to 'timeout' (number expected, got function; "
      .. "the seconds come first: corio.timeout(seconds, fn, ...))", 1, true), err)
    err = helpers.catch(function() corio.move_on_after(job, 5, "arg") end)
    assert.is_truthy(err:find("dogfood2_spec.lua:%d+: bad argument #1 to 'move_on_after' %(number expected"), err)
    -- outside the swap, the messages are as before
    err = helpers.catch(corio.timeout, 5, 5)
    assert.is_truthy(err:find("bad argument #2 to 'timeout' (function expected, got number)", 1, true), err)
  end)
end)
