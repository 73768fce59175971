-- fs_upper.lua: upper-case a large file line by line with corio.fs while
-- another task keeps ticking, to show that file I/O does not block the
-- loop (reads and writes run on libuv's thread pool; lines are split in C).
--
--   corio examples/fs_upper.lua [input [output]]
--
-- Without arguments it makes a 20 MiB input file in a temporary place and
-- removes both files at the end.
local corio = require "corio"
local fs = require "corio.fs"

local input, output = arg and arg[1], arg and arg[2]
local tmp = not input
if tmp then
  input = os.tmpname()
  fs.with_open(input, "w", function(f)
    local line = ("the quick brown fox jumps over the lazy dog "):rep(2)
    for i = 1, 200000 do f:write(i, " ", line, "\n") end
  end)
end
output = output or input .. ".upper"

local ticks, done = 0, false

corio.scope(function(s)
  -- The ticker: it would starve if a file operation blocked the loop.
  s:spawn(function()
    while not done do
      ticks = ticks + 1
      corio.sleep(0.001)
    end
  end)

  s:spawn(function()
    local t0, n = corio.now(), 0
    fs.with_open(output, "w", function(out)
      for line in fs.lines(input) do
        out:write(line:upper(), "\n")
        n = n + 1
      end
    end)
    done = true
    local dt = corio.now() - t0
    print(("%d lines, %.1f MiB in %.3f s; the ticker ran %d times meanwhile")
      :format(n, fs.stat(input).size / 1048576, dt, ticks))
  end)
end)

if tmp then
  fs.remove(input)
  fs.remove(output)
end
