#!/usr/bin/env bash
# gc_error.sh: LuaJIT passes on the error of a __gc metamethod to the code
# whose allocation ran the collector. Raised in corio's scheduler (between
# tasks, outside any protected call: keeping a task's results, recording
# its error) it ended in LuaJIT's panic: the process exited with status 1
# and said nothing. It is now the error of the task concerned (docs/errors.md
# "Out of memory" describes the same paths for memory errors).
# Usage: gc_error.sh path/to/corio   (or CORIO=path/to/corio)
. "$(dirname "$0")/lib.sh"

NAME="a __gc that raises while the scheduler allocates: a task's error, no exit"
cat >"$TMP/gc.lua" <<'LUA'
local corio = require "corio"
local ok, e = pcall(corio.run, function()
  local ts = {}
  for i = 1, 3000 do
    local p = newproxy(true)
    getmetatable(p).__gc = function() error("gc boom " .. i) end
    ts[#ts + 1] = corio.spawn(function() corio.yield() return "a" .. i, "b" end)
  end
  for _, t in ipairs(ts) do pcall(t.join, t) end
  return "done"
end)
print("after run", ok, tostring(e):match("gc boom %d+") or tostring(e))
LUA
run 60 "$CORIO" "$TMP/gc.lua"
check_rc 0 && check_out_has "after run	false	gc boom" && pass

finish
