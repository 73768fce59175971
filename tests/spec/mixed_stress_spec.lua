-- mixed_stress_spec.lua: tasks mixing every kind of wait (to_thread
-- workers, file reads and writes, HTTP requests, sleeps, channels) in one
-- run, under random deadlines and cancels. The kinds of pending work are
-- counted in different places (timers, thread pool, fs requests, curl
-- transfers), so this checks they add up:
--   * the run ends (no false deadlock, no hang) and results are right;
--   * every cancelled wait raised Cancelled or a timeout, nothing else;
--   * afterwards no task, descriptor or transfer is left.
-- Seeds are fixed; STRESS_SEEDS=n runs n more.

local corio = require("corio")
local fs = require("corio.fs")
local http = require("corio.http")

local src = os.getenv("CORIO_SOURCE_DIR") or "."
local server, pid, base, dir

setup(function()
  server = assert(io.popen("exec /usr/bin/python3 " .. src .. "/tests/http/server.py"))
  local line = server:read("*l")
  local port
  port, pid = line:match("^PORT (%d+) (%d+)")
  assert(port, "the test server did not start: " .. tostring(line))
  base = "http://127.0.0.1:" .. port
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute('mkdir -p "' .. dir .. '"') == 0 or true)
end)

teardown(function()
  if pid then os.execute("kill " .. pid) end
  if server then server:close() end
  if dir then os.execute('rm -rf "' .. dir .. '"') end
end)

local function lcg(seed)
  local s = seed
  return function(n)
    s = (s * 1103515245 + 12345) % 2147483648
    return math.floor(s / 65536) % n + 1   -- high bits: the low ones cycle
  end
end

local function open_fds()
  local n = 0
  for _ in fs.scandir("/proc/self/fd") do n = n + 1 end
  return n
end

local function run_seed(seed)
  local rand = lcg(seed)
  -- libuv opens its wakeup eventfd once per loop, at the first worker or
  -- file request: make it before counting; the client's descriptors
  -- (libcurl's wakeup pair, connections) must all be gone after close()
  corio.to_thread(function() end)
  local fds = open_fds()
  local c = http.client { base_url = base, limits = { max_connections = 4 } }
  local ch = corio.channel(2)
  local done, cut = 0, 0
  local ops = {
    function(i)   -- a worker thread
      local v = corio.to_thread(function(a, b) return a * b end, i, 3)
      assert(v == i * 3, "wrong worker result")
    end,
    function(i)   -- write a file and read it back
      local p = dir .. "/f" .. seed .. "_" .. i
      local data = ("x"):rep(rand(200000))
      fs.write_file(p, data)
      assert(fs.read_file(p) == data, "file read back differs")
    end,
    function()    -- an HTTP request
      local n = rand(3000)
      assert(#c:get("/bytes/" .. n):text() == n, "wrong body")
    end,
    function() corio.sleep(rand(3) * 0.002) end,
    function(i)   -- a channel round trip with another task
      corio.scope(function(s)
        s:spawn(function() ch:send(i) end)
        assert(ch:recv() ~= nil)
      end)
    end,
    function(i)   -- lines of a file
      local p = dir .. "/lines" .. seed .. "_" .. i
      fs.write_file(p, "a\nb\nc\n")
      local n = 0
      for _ in fs.lines(p) do n = n + 1 end
      assert(n == 3, "wrong line count")
    end,
  }
  local tasks = {}
  corio.scope(function(s)
    for i = 1, 16 do
      tasks[i] = s:spawn(function()
        for _ = 1, 6 do
          local op = ops[rand(#ops)]
          local ok, err
          if rand(3) == 1 then
            ok, err = pcall(corio.timeout, rand(5) * 0.001, op, i)
          else
            ok, err = pcall(op, i)
          end
          if ok then
            done = done + 1
          else
            cut = cut + 1
            assert(corio.is_error(err) and (err.kind == "timeout" or err.kind == "cancelled"),
              "seed " .. seed .. ": " .. tostring(err))
            if corio.is_cancelled(err) then corio.yield() end   -- ends a cancelled task
          end
        end
      end)
    end
    s:spawn(function()
      for _ = 1, 3 do
        corio.sleep(rand(5) * 0.002)
        tasks[rand(#tasks)]:cancel()
      end
    end)
  end)
  assert(done > 0, "seed " .. seed .. ": nothing completed")
  assert.equal(0, c:stats().in_flight)
  assert.equal(2 * 3, corio.to_thread(function(a) return a * 3 end, 2))
  c:close()
  -- collected files close on the thread pool: give them up to a second
  for _ = 1, 100 do
    collectgarbage()
    if open_fds() == fds then break end
    corio.sleep(0.01)
  end
  assert.equal(fds, open_fds(), "file descriptors left open")
end

describe("tasks mixing workers, files, HTTP, sleeps and channels", function()
  local seeds = { 1, 2, 3 }
  for i = 1, tonumber(os.getenv("STRESS_SEEDS") or 0) do seeds[#seeds + 1] = 100 + i end
  for _, seed in ipairs(seeds) do
    it("seed " .. seed .. " ends with right results and nothing left", function()
      local before = #corio.tasks()
      run_seed(seed)
      assert.equal(before, #corio.tasks(), "tasks left running")
    end)
  end
end)
