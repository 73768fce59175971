-- W5 file-copy on corio: copy the 256 MiB W5 input twice, timed apart:
-- `for chunk in f:chunks(1048576) do out:write(chunk) end` (libuv reads
-- with read-ahead, write-behind) and fs.copy (uv_fs_copyfile). Headline:
-- the chunks copy; fscopy_mib_per_s the fs.copy one. Compare with
-- floor-cp.sh (cp of the same file). Each copy is checked (size, first
-- and last 4 KiB).
local corio = require "corio"
local fs = require "corio.fs"
local SRC = os.getenv("BENCH_IN") or "/tmp/corio-bench/lines.txt"
local DST = "/tmp/corio-bench/out-corio-copy.txt"
local CHUNK = 1048576

local function sample(p, n)
  local f = assert(io.open(p, "rb"))
  local head = f:read(4096)
  f:seek("set", math.max(0, n - 4096))
  local tail = f:read(4096)
  f:close()
  return head, tail
end

local function check(n, what)
  local got = fs.stat(DST).size
  local h1, t1 = sample(SRC, n)
  local h2, t2 = sample(DST, n)
  fs.remove(DST)
  if got ~= n or h1 ~= h2 or t1 ~= t2 then
    io.stderr:write(("%s: wrong output: %d bytes of %d\n"):format(what, got, n))
    os.exit(1)
  end
end

corio.run(function()
  local n = fs.stat(SRC).size
  local t0 = corio.now()
  local f = fs.open(SRC, "rb")
  local out = fs.open(DST, "wb")
  for chunk in f:chunks(CHUNK) do out:write(chunk) end
  f:close()
  out:close()
  local dt = corio.now() - t0
  check(n, "chunks")

  local t1 = corio.now()
  fs.copy(SRC, DST)
  local dt2 = corio.now() - t1
  check(n, "fs.copy")

  print(("RESULT w5-file-copy corio mib_per_s=%.1f fscopy_mib_per_s=%.1f wall_s=%.4f bytes=%d")
    :format(n / 1048576 / dt, n / 1048576 / dt2, dt, n))
end)
