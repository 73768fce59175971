-- CPU-bound work through corio.to_thread: 4 jobs of BENCH_N loop iterations,
-- first one at a time, then two at a time. On a machine with 2 or more
-- cores the second run should take about half as long (speedup ~2).
local corio = require "corio"
local N = tonumber(os.getenv("BENCH_N") or 30000000)

local function burn(n)
  local s = 0
  for i = 1, n do s = s + i % 7 end
  return s
end

corio.run(function()
  local jobs = { N, N, N, N }
  local function run(limit)
    local t0 = corio.now()
    local r = corio.map(jobs, function(n) return corio.to_thread(burn, n) end, { limit = limit })
    for i = 2, #r do assert(r[i] == r[1]) end
    return corio.now() - t0
  end
  run(2) -- warm the worker states
  local one, two = run(1), run(2)
  print(string.format("RESULT w9-to-thread-cpu corio speedup=%.2f one_worker_s=%.3f two_workers_s=%.3f n=%d",
    one / two, one, two, N))
end)
