-- Micro-benchmark: the cost of entering and leaving a scope.
--   build/corio bench/micro/scope.lua                 (all cases)
--   BENCH_CASE=timeout BENCH_N=20000 bash bench/callgrind.sh bench/micro/scope.lua
-- Cases (BENCH_CASE, default all):
--   scope    corio.scope(function() end), BENCH_N times
--   timeout  corio.timeout(10, function() end), BENCH_N times
--   move_on  corio.move_on_after(10, function() end), BENCH_N times
--   shield   corio.shield(function() end), BENCH_N times
--   map      corio.map over BENCH_N items, limit = 4, fn returns item + 1
--            (each call runs in a body of its own: gather.lua own_body)
-- One RESULT line per case, with ns per op (wall clock, noisy on a shared
-- box; use callgrind's marginal Ir for comparisons).
local corio = require "corio"
local N = tonumber(os.getenv("BENCH_N") or 200000)
local which = os.getenv("BENCH_CASE") or "all"

local function nop() end
local function inc(x) return x + 1 end

local cases = {
  { "scope", function()
      local scope = corio.scope
      for _ = 1, N do scope(nop) end
    end },
  { "timeout", function()
      local timeout = corio.timeout
      for _ = 1, N do timeout(10, nop) end
    end },
  { "move_on", function()
      local move_on_after = corio.move_on_after
      for _ = 1, N do move_on_after(10, nop) end
    end },
  { "shield", function()
      local shield = corio.shield
      for _ = 1, N do shield(nop) end
    end },
  { "map", function()
      local items = {}
      for i = 1, N do items[i] = i end
      local r = corio.map(items, inc, { limit = 4 })
      for i = 1, N do
        if r[i] ~= i + 1 then
          io.stderr:write(("FAIL map r[%d]=%s\n"):format(i, tostring(r[i]))); os.exit(1)
        end
      end
    end },
}

corio.run(function()
  local ran = false
  for _, c in ipairs(cases) do
    if which == "all" or which == c[1] then
      ran = true
      local t0 = corio.now()
      c[2]()
      local dt = corio.now() - t0
      print(string.format("RESULT scope-%s corio ns_per_op=%.1f n=%d", c[1], dt * 1e9 / N, N))
    end
  end
  if not ran then io.stderr:write("unknown BENCH_CASE " .. which .. "\n"); os.exit(2) end
end)
