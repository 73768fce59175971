-- helpers.lua: small assertions and fixtures shared by the specs (not a
-- spec: busted runs *_spec.lua files only).
local corio = require("corio")

local M = {}

function M.catch(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error, but the call succeeded")
  return err
end

function M.new_log()
  local log = {}
  return log, function(v) log[#log + 1] = v end
end

-- A monotonic clock (seconds) corio does not read: corio.now() would end
-- a task's first-run discount (docs/semantics.md), so the clock specs
-- measure with this one.
do
  local ffi = require("ffi")
  pcall(ffi.cdef, "typedef struct { long tv_sec; long tv_nsec; } corio_ts_t;"
    .. " int clock_gettime(int, corio_ts_t *);")
  local ts = ffi.new("corio_ts_t")
  function M.mono()
    ffi.C.clock_gettime(1, ts)
    return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
  end
end

-- Hold the loop (no checkpoint) for at least secs of CPU time.
function M.hold(secs)
  local t = os.clock() + secs
  while os.clock() < t do end
end

function M.near(expected, got, tol)
  tol = tol or 0.01
  assert(math.abs(got - expected) <= tol,
    ("expected %.4f (+-%g), got %.4f"):format(expected, tol, got))
end

function M.outcome(ok, err)
  if ok then return "ok" end
  if corio.is_cancelled(err) then return "cancelled" end
  if type(err) == "table" and err.kind then return err.kind end
  return "error: " .. tostring(err)
end

-- Run fn(...) inside a scope cancelled before the call; it must raise,
-- and the error is returned (a blocking call's checkpoint, rule 3).
-- Every value a channel holds now, taken with try_recv, in order.
function M.drain(ch)
  local out = {}
  while true do
    local ok, v = ch:try_recv()
    if not ok then break end
    out[#out + 1] = v
  end
  return out
end

function M.catch_cancelled(fn, ...)
  local args = { n = select("#", ...), ... }
  local err
  corio.scope(function(s)
    s:cancel()
    err = M.catch(fn, unpack(args, 1, args.n))
  end)
  return err
end

-- The randomized stress specs: a deterministic generator (the high bits
-- of an LCG; its low bits cycle), rand(n) in 1..n ...
-- Rule 15's long pass: a 5 ms deadline on a wait, armed before one pass
-- over the ready queue of 200 tasks each busy ~0.5 ms (~100 ms); the last
-- of them sets the event the wait is for. Returns whether the deadline
-- cut the wait (the loop polled within the pass) and how long it took.
-- Used by core_spec and, through tests/cli/fixtures/poll_pass.lua, by the
-- CLI tests of CORIO_POLL_MS.
function M.long_pass()
  local ev = corio.event()
  local cut_in_time
  local t0 = corio.now()
  corio.scope(function(s)
    s:spawn(function()
      cut_in_time = corio.move_on_after(0.005, ev.wait, ev) == false
    end)
    corio.yield()   -- the wait and its deadline are armed before the pass
    for i = 1, 200 do
      s:spawn(function()
        local c = os.clock()
        while os.clock() - c < 0.0005 do end
        if i == 200 then ev:set() end
      end)
    end
  end)
  return cut_in_time, corio.now() - t0
end

function M.lcg(seed)
  local s = seed
  return function(n)
    s = (s * 1103515245 + 12345) % 2147483648
    return math.floor(s / 65536) % n + 1
  end
end

-- ... and their seeds: the fixed ones, then STRESS_SEEDS=n more.
function M.stress_seeds(fixed)
  local seeds = {}
  for i, v in ipairs(fixed) do seeds[i] = v end
  for i = 1, tonumber(os.getenv("STRESS_SEEDS") or 0) do seeds[#seeds + 1] = 100 + i end
  return seeds
end

-- Run fn(...) (a stress spec's seed) and fail if it left tasks running.
function M.no_tasks_left(fn, ...)
  local before = #corio.tasks()
  fn(...)
  local after = #corio.tasks()
  assert(after == before, ("tasks left running: %d before, %d after"):format(before, after))
end

-- Open file descriptors, counted in-process (fs.scandir's own is counted
-- the same way each time).
function M.open_fds()
  local n = 0
  for _ in require("corio.fs").scandir("/proc/self/fd") do n = n + 1 end
  return n
end

-- Files that were collected close on the thread pool: wait up to a
-- second for the count to come back to fds, then check it.
function M.assert_fds_back(fds)
  for _ = 1, 100 do
    collectgarbage()
    if M.open_fds() == fds then break end
    corio.sleep(0.01)
  end
  assert(M.open_fds() == fds, "file descriptors left open")
end

-- Start tests/http/server.py (extra: its options, e.g. "--tls cert key";
-- script: another server of tests/http, e.g. "dogfood_server.py") on
-- 127.0.0.1; returns the base URL (scheme: "http" unless given) and a
-- function that stops it.
function M.http_server(extra, scheme, script)
  local src = os.getenv("CORIO_SOURCE_DIR") or "."
  local server = assert(io.popen("exec /usr/bin/python3 " .. src
    .. "/tests/http/" .. (script or "server.py")
    .. (extra and " " .. extra or "")))
  local line = server:read("*l")
  local port, pid = (line or ""):match("^PORT (%d+) (%d+)")
  assert(port, "the test server did not start: " .. tostring(line))
  return (scheme or "http") .. "://127.0.0.1:" .. port, function()
    os.execute("kill " .. pid)
    server:close()
  end
end

-- Why TLS tests cannot run here (openssl, which makes their certificate,
-- is missing; python's ssl module can serve TLS but not make one), or nil.
function M.no_openssl()
  if os.execute("command -v openssl >/dev/null 2>&1") ~= 0 then
    return "openssl is not installed: no way to make a certificate"
  end
end

-- A self-signed certificate for 127.0.0.1 (also as subjectAltName) made
-- in dir; returns the paths of the certificate and of its key.
function M.self_signed(dir)
  local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  local cmd = ("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
    .. "-addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s >/dev/null 2>&1"):format(key, cert)
  assert(os.execute(cmd) == 0, "openssl could not make a certificate")
  return cert, key
end

-- Assert that HTTP client c still answers a GET of the test server's
-- /ok (within secs, default 2), as after a fault it must.
function M.http_still_works(c, secs)
  local r = require("corio").timeout(secs or 2, c.get, c, "/ok")
  assert(r.status == 200, "the client no longer works: status " .. tostring(r.status))
  local body = r:text()
  assert(body == "hello", "the client no longer works: body " .. body)
end

-- Garbage whose finaliser raises inside its own pcall, for the tests of
-- values handed to a woken task: an allocation on a suspended thread
-- runs such a finaliser there, which wrecked the thread. Returns how many
-- of these finalisers have run so far.
local finalised = 0
function M.raising_garbage()
  local p = newproxy(true)
  getmetatable(p).__gc = function()
    pcall(error, "raised in __gc")
    finalised = finalised + 1
  end
  return finalised
end

-- fn(...) with the collector stepping at every allocation, so that such
-- finalisers run wherever corio allocates; the settings are put back and
-- fn's error raised afterwards.
function M.with_busy_gc(fn, ...)
  local pause = collectgarbage("setpause", 0)
  local mul = collectgarbage("setstepmul", 1000)
  local ok, err = pcall(fn, ...)
  collectgarbage("setpause", pause)
  collectgarbage("setstepmul", mul)
  assert(ok, err)
end

-- Files written and read with Lua's own io, so that corio.fs is checked
-- against an independent reader and writer.
function M.io_write(p, data)
  local f = assert(io.open(p, "wb"))
  f:write(data)
  f:close()
end

function M.io_read(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- The output of a shell command (stdout; add 2>&1 for stderr), run on a
-- worker thread so that the loop goes on meanwhile.
function M.shell(cmd)
  return require("corio").to_thread(function(c)
    local h = io.popen(c)
    local s = h:read("*a")
    h:close()
    return s
  end, cmd)
end

-- A fresh directory under the system's temporary directory, named with
-- tag, and a function that removes it with everything in it.
function M.temp_dir(tag)
  local base = os.tmpname()
  os.remove(base)
  local dir = base .. "." .. tag
  local ok = os.execute('mkdir -p "' .. dir .. '"')
  assert(ok == 0 or ok == true, "cannot make " .. dir)
  return dir, function()
    local p = io.popen('rm -rf "' .. dir .. '"')
    p:close()
  end
end


-- A request body iterator (corio.http streamed bodies): n chunks of size
-- bytes, the first all "a", the next all "b", ... ("z", then "a" again).
function M.letter_chunks(n, size)
  local i = 0
  return function()
    i = i + 1
    if i > n then return nil end
    return string.rep(string.char(96 + (i - 1) % 26 + 1), size)
  end
end

-- No transfer of client c left in flight, and c still answers.
function M.http_clean(c)
  local n = c:stats().in_flight
  if n ~= 0 then error(("%d request(s) still in flight"):format(n), 2) end
  M.http_still_works(c, 5)
end

return M
