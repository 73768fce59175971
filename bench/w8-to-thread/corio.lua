-- to_thread round trip on corio: BENCH_N calls of an empty function through
-- corio.to_thread, 4 in flight (corio.map with limit 4). Metric: us/call.
local corio = require "corio"
local N = tonumber(os.getenv("BENCH_N") or 10000)

local function empty(x) return x end

corio.run(function()
  local items = {}
  for i = 1, N do items[i] = i end
  local t0 = corio.now()
  local r = corio.map(items, function(i) return corio.to_thread(empty, i) end, { limit = 4 })
  local dt = corio.now() - t0
  for i = 1, N do
    if r[i] ~= i then io.stderr:write("FAIL at " .. i .. "\n"); os.exit(1) end
  end
  print(string.format("RESULT w8-to-thread corio us_per_call=%.2f wall_s=%.4f n=%d",
    dt * 1e6 / N, dt, N))
end)
