-- demo.lua: the core of corio in one screen. Run it with
--   build/corio examples/demo.lua
-- (or under a stock luajit with LUA_PATH/LUA_CPATH set, see README).
local corio = require "corio"

local t0 = corio.now()
local function log(fmt, ...)
  print(("[%5.2f s] " .. fmt):format(corio.now() - t0, ...))
end

-- A pretend I/O call: sleeps, then returns a value.
local function fetch(id, seconds)
  corio.sleep(seconds)
  return "user " .. id
end

corio.run(function()
  -- spawn + join
  local t = corio.spawn(fetch, 1, 0.1)
  log("spawned %s; joined: %s", t.name, t:join())

  -- gather: three calls at once; total time is the slowest one
  local users = corio.gather({
    function() return fetch(2, 0.2) end,
    function() return fetch(3, 0.1) end,
    function() return fetch(4, 0.3) end,
  })
  log("gathered %s", table.concat(users, ", "))

  -- a semaphore bounds concurrency: 6 jobs, 2 at a time, ~3 rounds
  local sem = corio.semaphore(2)
  local running, peak = 0, 0
  corio.scope(function(s)
    for i = 1, 6 do
      s:spawn(function()
        sem:with(function()
          running = running + 1
          peak = math.max(peak, running)
          corio.sleep(0.1)
          running = running - 1
        end)
      end)
    end
  end)
  log("6 jobs through semaphore(2): at most %d ran at once", peak)

  -- timeout: a slow call is cancelled, and the error says so
  local ok, err = pcall(corio.timeout, 0.15, fetch, 5, 10)
  log("timeout: ok=%s kind=%s (%s)", tostring(ok), err.kind, err.message)

  -- move_on_after: give up quietly
  local done, v = corio.move_on_after(0.05, fetch, 6, 1)
  log("move_on_after: finished=%s value=%s", tostring(done), tostring(v))

  -- an error in one child cancels its siblings; the scope raises it
  local ok2, err2 = pcall(corio.scope, function(s)
    s:spawn(function() corio.sleep(10); log("never printed") end)
    s:spawn(function() corio.sleep(0.05); error("disk on fire", 0) end)
  end)
  log("scope failed=%s: %s (sibling cancelled)", tostring(not ok2), err2.message)

  -- a channel between a producer and a consumer
  local ch = corio.channel(2)
  corio.spawn(function()
    for i = 1, 5 do ch:send(i * i) end
    ch:close()
  end)
  local got = {}
  for v2 in ch:iter() do got[#got + 1] = v2 end
  log("channel delivered %s", table.concat(got, " "))
end)
