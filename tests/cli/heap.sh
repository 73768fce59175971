#!/usr/bin/env bash
# The allocator of the states corio makes (runtime/heap.c) under a limit
# on address space (ulimit -v): with room for only its smallest range
# (1 GiB), with room for none (LuaJIT's allocator then), and running out
# of memory, which stays a Lua error the script can catch. Sanitizer
# builds reserve terabytes of shadow memory, so they skip it.
set -u
CORIO=${1:-build/corio}
if [ -n "${CORIO_SANITIZE:-}" ]; then
  echo "ok - skipped: a sanitizer build cannot run under ulimit -v"
  exit 0
fi
pass=0 fail=0
check() { if echo "$out" | grep -q "$2"; then pass=$((pass+1)); echo "ok - $1"; else fail=$((fail+1)); echo "FAIL - $1"; echo "$out" | sed 's/^/    /'; fi; }
tasks='
local corio = require "corio"
corio.run(function()
  local ts = {}
  corio.scope(function(s)
    for i = 1, 20000 do ts[i] = s:spawn(function() corio.yield() return i end) end
  end)
  local sum = 0
  for i = 1, #ts do sum = sum + ts[i]:join() end
  print("sum", sum)
end)'
out=$( (ulimit -v 2500000; "$CORIO" -e "$tasks") 2>&1)
check "with room for a 1 GiB range, tasks run" "^sum	200010000$"
out=$( (ulimit -v 600000; "$CORIO" -e "$tasks") 2>&1)
check "with room for no range, LuaJIT's allocator runs them" "^sum	200010000$"
out=$( (ulimit -v 400000; "$CORIO" -e '
local t = {}
local ok, err = pcall(function() for i = 1, 1e8 do t[i] = {i} end end)
t = nil
collectgarbage()
print("caught", ok, err)') 2>&1)
check "running out of memory is a Lua error" "^caught	false	not enough memory$"
echo "heap: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
