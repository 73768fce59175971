-- W6 ping-pong on corio: one producer and one consumer pass M messages
-- (0 .. M-1) through a channel of capacity 1; the consumer sums them.
-- Same work, knobs and RESULT line as peers/w6-ping-pong/luajit-luv.lua.
local corio = require "corio"
local M = tonumber(os.getenv("BENCH_M") or 1000000)

corio.run(function()
  local ch = corio.channel(1)
  local total = 0
  local t0 = corio.now()
  corio.scope(function(s)
    s:spawn(function()
      for i = 0, M - 1 do ch:send(i) end
    end)
    s:spawn(function()
      local sum = 0
      for _ = 1, M do sum = sum + ch:recv() end
      total = sum
    end)
  end)
  local dt = corio.now() - t0
  if total ~= M * (M - 1) / 2 then
    io.stderr:write("FAIL sum=" .. total .. "\n"); os.exit(1)
  end
  print(string.format("RESULT w6-ping-pong corio ns_per_msg=%.1f wall_s=%.4f m=%d",
    dt * 1e9 / M, dt, M))
end)
