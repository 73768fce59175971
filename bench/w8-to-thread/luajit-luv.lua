-- to_thread round trip on LuaJIT + luv: BENCH_N uv.new_work calls of an empty
-- function, 4 in flight, results checked. Metric: us/call.
local uv = require "luv"
local N = tonumber(os.getenv("BENCH_N") or 10000)
local results, done, started = {}, 0, 0
local work
work = uv.new_work(function(i) return i end, function(i)
  results[i] = i
  done = done + 1
  if started < N then started = started + 1; work:queue(started) end
end)
local t0 = uv.hrtime()
for _ = 1, 4 do started = started + 1; work:queue(started) end
uv.run()
local dt = (uv.hrtime() - t0) / 1e9
for i = 1, N do
  if results[i] ~= i then io.stderr:write("FAIL at " .. i .. "\n"); os.exit(1) end
end
print(string.format("RESULT w8-to-thread luajit-luv us_per_call=%.2f wall_s=%.4f n=%d",
  dt * 1e6 / N, dt, N))
