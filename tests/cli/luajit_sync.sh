#!/usr/bin/env bash
# luajit_sync.sh: rule 11: outside a running loop a blocking corio function
# runs to completion synchronously under a stock luajit, corio.run works
# there, a nested corio.run raises naming corio.scope, and one script runs
# the same under luajit and under corio. Module paths come from
# CORIO_LUA_PATH / CORIO_LUA_CPATH (set by CTest).
# Usage: luajit_sync.sh path/to/corio   (or CORIO=path/to/corio)
. "$(dirname "$0")/lib.sh"

if ! command -v "$LUAJIT" >/dev/null; then
  echo "FAIL: no luajit on PATH" >&2
  exit 1
fi

NAME="rule 11: corio.sleep outside a loop sleeps synchronously"
luajit_run 10 -e '
local corio = require("corio")
local t0 = corio.now()
corio.sleep(0.05)
print(corio.now() - t0 >= 0.045)'
check_rc 0 && check_out_eq "true" && pass

NAME="rule 11: channel, gather and timeout work outside a loop"
luajit_run 10 -e '
local corio = require("corio")
local ch = corio.channel(1)
ch:send(1)
print(ch:recv())
local r = corio.gather({
  function() corio.sleep(0.02); return "a" end,
  function() return "b" end,
})
print(r[1], r[2])
local ok, err = pcall(corio.timeout, 0.01, corio.sleep, 5)
print(ok, err.kind)'
check_rc 0 && check_out_eq "$(printf '1\na\tb\nfalse\ttimeout')" && pass

NAME="rule 11: corio.to_thread outside a loop runs it to completion"
luajit_run 10 -e '
local corio = require("corio")
local a, t = corio.to_thread(function(x) return x * 2, { x } end, 21)
print(a, t[1])
local ok, err = pcall(corio.to_thread, function() error("in worker") end)
print(ok, err.kind, (err.message:match("in worker")))'
check_rc 0 && check_out_eq "$(printf '42\t21\nfalse\terror\tin worker')" && pass

NAME="rule 11: corio.run returns fn's results and waits for descendants"
luajit_run 10 -e '
local corio = require("corio")
print(corio.run(function(a, b)
  corio.spawn(function() corio.sleep(0.03); print("child done") end)
  return a + b, "x"
end, 1, 2))'
check_rc 0 && check_out_eq "$(printf 'child done\n3\tx')" && pass

NAME="rule 10: corio.run wraps a plain error and keeps a corio error"
luajit_run 10 -e '
local corio = require("corio")
local ok, err = pcall(corio.run, function() error("boom", 0) end)
print(ok, err.kind, err.value)
local E = {}
ok, err = pcall(corio.run, function() error(E) end)
print(rawequal(err.value, E))
ok, err = pcall(corio.run, function() corio.timeout(0.01, corio.sleep, 1) end)
print(ok, err.kind)'
check_rc 0 && check_out_eq "$(printf 'false\terror\tboom\ntrue\nfalse\ttimeout')" \
  && pass

NAME="rule 11: corio.run inside a task raises naming corio.scope"
luajit_run 10 -e '
local corio = require("corio")
corio.run(function()
  local ran = false
  local ok, err = pcall(corio.run, function() ran = true end)
  print(ok, ran, tostring(err):find("corio.scope", 1, true) ~= nil)
end)'
check_rc 0 && check_out_eq "$(printf 'false\tfalse\ttrue')" && pass

NAME="bad arguments raise in the synchronous fallback too"
luajit_run 10 -e '
local corio = require("corio")
local ok, err = pcall(corio.sleep, -1)
print(ok, tostring(err):find("bad argument #1 to '"'"'sleep'"'"'", 1, true) ~= nil)'
check_rc 0 && check_out_eq "$(printf 'false\ttrue')" && pass

NAME="rule 11: the same script runs the same under luajit and corio"
luajit_run 10 "$FIX/dual.lua"
expected="$(printf 'map\t30,10,20\nchannel\ta,b\ntimeout\ttrue\nsleep\ttrue')"
check_rc 0 && check_out_eq "$expected" && pass
NAME="rule 11: the same script under corio"
run 10 "$CORIO" "$FIX/dual.lua"
check_rc 0 && check_out_eq "$expected" && pass

NAME="rule 13: a coroutine resumed by a copy of coroutine.resume taken before require refuses to suspend"
# That copy would take corio's suspension for a plain yield and the task
# would run on while counted as blocked (it once hung). The corio call
# raises instead, and the task goes on working.
luajit_run 10 -e '
local raw_resume = coroutine.resume
local corio = require("corio")
corio.run(function()
  local ch = corio.channel(0)
  local co = coroutine.create(function() return ch:recv() end)
  local ok, err = raw_resume(co)
  print(ok, tostring(err):find("before require", 1, true) ~= nil)
  local w = corio.spawn(function() return ch:recv() end)
  corio.yield()
  ch:send("v")                       -- not lost to the refused receiver
  print(w:join(), corio.timeout(1, function() corio.sleep(0.01); return "ok" end))
  local gen = coroutine.wrap(function() corio.sleep(0.01); coroutine.yield(1) end)
  print(gen())                       -- the wrapped resume passes it through
end)'
check_rc 0 && check_out_eq "$(printf 'false\ttrue\nv\tok\n1')" && pass

finish
