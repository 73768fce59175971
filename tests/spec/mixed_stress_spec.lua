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

local helpers = require("tests.spec.helpers")
local base, stop_server, dir

setup(function()
  base, stop_server = helpers.http_server()
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute('mkdir -p "' .. dir .. '"') == 0 or true)
end)

teardown(function()
  if stop_server then stop_server() end
  if dir then os.execute('rm -rf "' .. dir .. '"') end
end)

local function run_seed(seed)
  local rand = helpers.lcg(seed)
  -- libuv opens its wakeup eventfd once per loop, at the first worker or
  -- file request: make it before counting; the client's descriptors
  -- (libcurl's wakeup pair, connections) must all be gone after close()
  corio.to_thread(function() end)
  local fds = helpers.open_fds()
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
  helpers.assert_fds_back(fds)
end

describe("tasks mixing workers, files, HTTP, sleeps and channels", function()
  for _, seed in ipairs(helpers.stress_seeds { 1, 2, 3 }) do
    it("seed " .. seed .. " ends with right results and nothing left", function()
      helpers.no_tasks_left(run_seed, seed)
    end)
  end
end)
