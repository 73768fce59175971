-- W2 timers on corio: N concurrent tasks in one scope, task i sleeps
-- (i % 1000) ms (corio.sleep(0) is a plain checkpoint) and returns 1.
-- bytes_per_task = (VmHWM - VmRSS before spawning) * 1024 / N, read from
-- /proc/self/status as lib/luvsched.lua's proc_kb does.
-- Same work, knobs and RESULT line as peers/w2-timers/luajit-luv.lua.
local corio = require "corio"
local N = tonumber(os.getenv("BENCH_N") or 100000)

local function proc_kb(field)
  local f = io.open("/proc/self/status")
  local s = f:read("*a"); f:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

local function work(i)
  corio.sleep((i % 1000) / 1000)
  return 1
end

corio.run(function()
  local tasks = {}
  local base = proc_kb("VmRSS")
  local t0 = corio.now()
  corio.scope(function(s)
    for i = 0, N - 1 do tasks[i + 1] = s:spawn(work, i) end
  end)
  local dt = corio.now() - t0
  local done = 0
  for i = 1, N do done = done + tasks[i]:join() end
  if done ~= N then
    io.stderr:write("FAIL done=" .. done .. "\n"); os.exit(1)
  end
  local peak = proc_kb("VmHWM")
  print(string.format("RESULT w2-timers corio wall_s=%.4f bytes_per_task=%.0f "
    .. "base_rss_kb=%d peak_rss_kb=%d n=%d",
    dt, (peak - base) * 1024 / N, base, peak, N))
end)
