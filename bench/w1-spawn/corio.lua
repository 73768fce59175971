-- W1 spawn on corio: N tasks in one scope; each yields to the scheduler once
-- (corio.yield) and returns i*2; the caller joins every task and checks the sum.
-- Same work, knobs and RESULT line as peers/w1-spawn/luajit-luv.lua.
local corio = require "corio"
local N = tonumber(os.getenv("BENCH_N") or 100000)

local function work(i)
  corio.yield()
  return i * 2
end

corio.run(function()
  local tasks = {}
  local t0 = corio.now()
  corio.scope(function(s)
    for i = 0, N - 1 do tasks[i + 1] = s:spawn(work, i) end
  end)
  local sum = 0
  for i = 1, N do sum = sum + tasks[i]:join() end
  local dt = corio.now() - t0
  if sum ~= N * (N - 1) then
    io.stderr:write("FAIL sum=" .. sum .. "\n"); os.exit(1)
  end
  print(string.format("RESULT w1-spawn corio wall_s=%.4f n=%d", dt, N))
end)
