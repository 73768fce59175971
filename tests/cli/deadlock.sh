#!/usr/bin/env bash
# deadlock.sh: rule 14: when the root has not finished and nothing can
# ever wake a task, corio raises kind "deadlock" naming every blocked task
# and where it waits, instead of hanging; and it never reports a deadlock
# while a timer or thread work can still wake someone.
# Usage: deadlock.sh path/to/corio   (or CORIO=path/to/corio)
. "$(dirname "$0")/lib.sh"

NAME="rule 14: a root joining a child that waits forever is a deadlock"
run 15 "$CORIO" "$FIX/deadlock.lua"
child="$(sed -n 's/^child=//p' "$TMP/out")"
root="$(sed -n 's/^root=//p' "$TMP/out")"
check_rc 1 && check_err_has "deadlock" \
  && check_err_has "deadlock.lua:5" && check_err_has "deadlock.lua:10" \
  && check_out_lacks "not reached" && {
    if [ -n "$child" ] && [ -n "$root" ]; then
      check_err_has "$child" && check_err_has "$root" && pass
    else
      fail "the fixture did not print the task names"
    fi
  }

NAME="rule 14: two tasks waiting on each other's channels are a deadlock"
run 15 "$CORIO" "$FIX/deadlock_channel.lua"
check_rc 1 && check_err_has "deadlock" \
  && check_err_has "deadlock_channel.lua:5" \
  && check_err_has "deadlock_channel.lua:9" && pass

NAME="rule 14: a root blocked on an event nobody can set is a deadlock"
run 15 "$CORIO" -e 'local corio = require("corio"); corio.event():wait()'
check_rc 1 && check_err_has "deadlock" && pass

NAME="rule 14: a lock held forever by a blocked task is a deadlock"
run 15 "$CORIO" -e '
local corio = require("corio")
local l = corio.lock()
local s = corio.semaphore(0)
corio.spawn(function() l:acquire(); s:acquire() end)
corio.yield()
l:acquire()'
check_rc 1 && check_err_has "deadlock" && pass

NAME="rule 14: a deadlock of 5,000 tasks is a bounded report: 20 tasks named, the rest counted by where they wait"
run 30 "$CORIO" "$FIX/deadlock_many.lua"
check_rc 1 && check_err_has "deadlock" && check_out_lacks "not reached" \
  && check_err_has "task 20 (" && check_err_lacks "task 21 (" \
  && check_err_has_re "2981 more tasks: waits in event wait at [^ ]*deadlock_many.lua:7$" \
  && check_err_has_re "1000 more tasks: waits in channel recv at [^ ]*deadlock_many.lua:8$" \
  && check_err_has "84 more tasks: waits in event wait at place1:1" \
  && check_err_has "83 more tasks: waits in event wait at place8:1" \
  && check_err_lacks "place9:1" \
  && check_err_has "332 more tasks elsewhere" && {
    lines="$(wc -l < "$TMP/err")"
    if [ "$lines" -le 40 ]; then pass
    else fail "the report has $lines lines"; fi
  }

NAME="rule 14: tasks a timer will wake are not deadlocked"
run 15 "$CORIO" "$FIX/no_deadlock.lua"
check_rc 0 && check_out_eq "event set" && pass

NAME="rule 14: a task waiting for thread work is not deadlocked"
run 15 "$CORIO" "$FIX/no_deadlock_thread.lua"
check_rc 0 && check_out_eq "thread done" && pass

NAME="rule 14: under luajit, corio.run raises kind 'deadlock' and recovers"
luajit_run 15 -e '
local corio = require("corio")
local ok, err = pcall(corio.run, function()
  local ch = corio.channel()
  ch:recv()
end)
print(ok, type(err) == "table" and err.kind or tostring(err))
print(tostring(err):find("deadlock", 1, true) ~= nil)
print(corio.run(function() corio.sleep(0.01); return "usable" end))'
check_rc 0 && check_out_eq "$(printf 'false\tdeadlock\ntrue\nusable')" && pass

NAME="rule 14 + 11: corio.run in the CLI main chunk raises kind 'deadlock' as under luajit"
# Under the CLI the main chunk is the root task and its corio.run runs fn
# in a child scope; a deadlock inside fn used to cancel the root, so the
# pcall got kind "cancelled" and the script went on inside a cancelled
# root. It must get the deadlock error (naming the blocked task) and go on.
code='local corio = require("corio")
local ok, err = pcall(corio.run, function()
  corio.defer(function() print("cleanup ran") end)
  local ev = corio.event()
  corio.spawn(function() ev:wait() end)
  ev:wait()
end)
print(ok, type(err) == "table" and err.kind or tostring(err))
print(select(2, tostring(type(err) == "table" and err.message):gsub("event wait", "")))
print(corio.run(function() corio.sleep(0.001); return "usable" end))'
luajit_run 15 -e "$code"
luajit_out="$OUT"
run 15 "$CORIO" -e "$code"
check_rc 0 && check_out_eq "$luajit_out" \
  && check_out_eq "$(printf 'cleanup ran\nfalse\tdeadlock\n2\nusable')" && pass

NAME="rule 14: a deadlock in the main chunk after its corio.run raised one still ends the run"
run 15 "$CORIO" -e 'local corio = require("corio")
print(pcall(corio.run, function() corio.event():wait() end))
corio.event():wait()
print("not reached")'
check_rc 1 && check_err_has "deadlock" && check_out_lacks "not reached" && pass

finish
