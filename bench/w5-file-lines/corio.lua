-- W5 file-lines on corio: for line in f:lines() (lines split in C from a
-- buffer filled by libuv fs reads), upper-cased with string.upper, written
-- with f:write (buffered in C, flushed by libuv fs writes). Same data and
-- RESULT line as peers/w5-file-lines/floor-luajit-io-lines.lua.
local corio = require "corio"
local fs = require "corio.fs"
local SRC = os.getenv("BENCH_IN") or "/tmp/corio-bench/lines.txt"
local DST = "/tmp/corio-bench/out-corio.txt"
local upper = string.upper

corio.run(function()
  local t0 = corio.now()
  local out = fs.open(DST, "wb")
  local f = fs.open(SRC, "rb")
  for line in f:lines() do out:write(upper(line), "\n") end
  f:close()
  out:close()
  local dt = corio.now() - t0
  local n, got = fs.stat(SRC).size, fs.stat(DST).size
  local g = io.open(DST, "rb"); local first = g:read(100); g:close()
  local h = io.open(SRC, "rb"); local efirst = h:read(100):upper(); h:close()
  fs.remove(DST)
  if got ~= n or first ~= efirst then
    io.stderr:write(("wrong output: %d bytes of %d\n"):format(got, n)); os.exit(1)
  end
  print(("RESULT w5-file-lines corio mib_per_s=%.1f wall_s=%.4f bytes=%d"):format(n / 1048576 / dt, dt, n))
end)
