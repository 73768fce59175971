-- W7 semaphore on corio: N tasks in one scope contend for a semaphore of 10;
-- each acquires, yields to the scheduler once (corio.yield), releases.
-- Checks that every task ran and that exactly 10 were ever inside at once.
-- Same work, knobs and RESULT line as peers/w7-semaphore/luajit-luv.lua.
local corio = require "corio"
local N = tonumber(os.getenv("BENCH_N") or 100000)

corio.run(function()
  local sem = corio.semaphore(10)
  local inside, max, done = 0, 0, 0
  local function work()
    sem:acquire()
    inside = inside + 1
    if inside > max then max = inside end
    corio.yield()
    inside = inside - 1
    done = done + 1
    sem:release()
    return 0
  end
  local t0 = corio.now()
  corio.scope(function(s)
    for i = 1, N do s:spawn(work, i) end
  end)
  local dt = corio.now() - t0
  if done ~= N or max ~= 10 then
    io.stderr:write(("FAIL done=%d max=%d\n"):format(done, max)); os.exit(1)
  end
  print(string.format("RESULT w7-semaphore corio wall_s=%.4f n=%d", dt, N))
end)
