#!/usr/bin/env bash
# debug_parity.sh: the CLI side of tests/spec/debug_parity_spec.lua, the
# debugging surface against asyncio / trio / Node habits: the deadlock
# report with many blocked tasks and with odd task names, SIGUSR1's tree
# with such names and with no run going, the uncaught-error report for
# error values that are not strings, a task error nobody joins, and
# corio.tasks() outside a loop under a stock luajit.
# Usage: debug_parity.sh path/to/corio   (or CORIO=path/to/corio)
. "$(dirname "$0")/lib.sh"

NAME="deadlock with 500 blocked tasks: the first 20 named one a line, the rest counted where they wait, exit 1"
cat > "$TMP/many.lua" <<'LUA'
local corio = require "corio"
local ev = corio.event()
for i = 1, 500 do corio.spawn(function() ev:wait() end).name = "w" .. i end
ev:wait()
LUA
run 30 "$CORIO" "$TMP/many.lua"
check_rc 1 && check_err_has "corio: deadlock: every task is blocked" \
  && check_err_has "  task 1 waits in event wait at $TMP/many.lua:4" \
  && check_err_has "  w1 waits in event wait at $TMP/many.lua:3" \
  && check_err_has "  w19 waits in event wait at $TMP/many.lua:3" \
  && check_err_lacks "  w20 waits" \
  && check_err_has "  481 more tasks: waits in event wait at $TMP/many.lua:3" && {
    n="$(grep -c "waits in event wait" "$TMP/err")"
    if [ "$n" = 21 ]; then pass; else fail "expected 21 lines naming the wait, got $n"; fi
  }

# A name with a newline made a line of its own in the report (one that
# could pass for another task's), a NUL ended the line there, and a name
# of 1 MB made a line of 1 MB. The report escapes and cuts the name;
# task.name keeps it (tests/spec/debug_parity_spec.lua).
NAME="deadlock report: a name with newline/NUL is escaped, a long one cut"
cat > "$TMP/odd.lua" <<'LUA'
local corio = require "corio"
local ev = corio.event()
local t = corio.spawn(function() ev:wait() end)
t.name = "evil\n  task 99 waits in nothing\0hidden" .. string.rep("y", 1000000)
ev:wait()
LUA
run 30 "$CORIO" "$TMP/odd.lua"
check_rc 1 && check_err_has "deadlock" \
  && check_err_has_re '^  evil\\n  task 99 waits in nothing\\0hiddenyyy+\.\.\. waits in event wait at .*odd\.lua:3$' \
  && {
    n="$(wc -c < "$TMP/err")" l="$(wc -l < "$TMP/err")"
    if [ "$n" -lt 2000 ] && [ "$l" = 3 ]; then pass
    else fail "the report is $n bytes, $l lines (expected 3)"; fi
  }

NAME="SIGUSR1's tree: an odd name stays on its line, escaped"
cat > "$TMP/usr1.lua" <<'LUA'
local corio = require "corio"
corio.scope(function(s)
  s:spawn(function() corio.sleep(5) end).name = "two\nlines"
  io.stdout:write("ready\n"); io.stdout:flush()
  corio.sleep(2)
  s:cancel()
end)
print("went on")
LUA
start "$CORIO" "$TMP/usr1.lua"
if wait_for ready 30; then
  kill -USR1 "$PID"
  reap 20
  check_rc 0 && check_out_has "went on" && check_err_has "2 live task(s):" \
    && check_err_has_re '^  two\\nlines \[running\] waiting in sleep at .*usr1\.lua:3 \(spawned at .*usr1\.lua:3\)$' \
    && pass
else
  reap 5; fail "no 'ready' from the script"
fi

NAME="a traceback's spawn-site line escapes an odd name too"
run 15 "$CORIO" -e '
local corio = require "corio"
local t = corio.spawn(function() corio.sleep(0.01); error("bad") end)
t.name = "x\ny"'
check_rc 1 && check_err_has "corio: error: (command line):3: bad" \
  && check_err_has '(x\ny spawned at (command line):3)' && pass

NAME="SIGUSR1 at the REPL's prompt (no run going): a note, and it goes on"
mkfifo "$TMP/in"
"$CORIO" <"$TMP/in" >"$TMP/out" 2>"$TMP/err" &
PID=$!
exec 7>"$TMP/in"
sleep 0.5
kill -USR1 "$PID" 2>/dev/null
sleep 0.3
echo 'print("after", 1 + 1)' >&7
exec 7>&-
reap 20
check_rc 0 && check_err_has "corio: no task is running" \
  && check_out_has "after	2" && pass

NAME="uncaught error: a table without __tostring, exit 1 with its traceback"
run 15 "$CORIO" -e 'local corio = require "corio"
local function fail_with_table() error({code = 7}) end
fail_with_table()'
check_rc 1 && check_err_has "corio: error: (error object is a table value)" \
  && check_err_has "(command line):2: in function 'fail_with_table'" && pass

NAME="uncaught error: a table with __tostring shows its text"
run 15 "$CORIO" -e 'error(setmetatable({}, {__tostring = function() return "my error type" end}))'
check_rc 1 && check_err_has "corio: error: my error type" && pass

NAME="uncaught error: a __tostring that raises does not hide the error"
run 15 "$CORIO" -e 'error(setmetatable({}, {__tostring = function() error("no") end}))'
check_rc 1 && check_err_has "corio: error: (error object is a table value)" \
  && check_err_has "stack traceback:" && pass

NAME="uncaught error: a userdata and nil as error values"
run 15 "$CORIO" -e 'error(io.stdout)'
check_rc 1 && check_err_has_re "corio: error: file \(0x[0-9a-f]+\)" && {
  run 15 "$CORIO" -e 'error(nil)'
  check_rc 1 && check_err_has "corio: error: (error object is a nil value)" && pass
}

NAME="a task error nobody joins: traceback of the child and its spawn site, exit 1"
cat > "$TMP/unjoined.lua" <<'LUA'
local corio = require "corio"
local function worker()
  corio.sleep(0.01)
  error("worker failed")
end
local t = corio.spawn(worker)
t.name = "the worker"
corio.sleep(1)
print("not reached")
LUA
run 15 "$CORIO" "$TMP/unjoined.lua"
check_rc 1 && check_out_lacks "not reached" \
  && check_err_has "corio: error: $TMP/unjoined.lua:4: worker failed" \
  && check_err_has "$TMP/unjoined.lua:4: in function <$TMP/unjoined.lua:2>" \
  && check_err_has "(the worker spawned at $TMP/unjoined.lua:6)" && pass

NAME="corio.tasks() outside a loop (stock luajit): an empty array"
luajit_run 15 -e 'local corio = require "corio"
local t = corio.tasks()
print(type(t), #t, next(t))'
check_rc 0 && check_out_eq "table	0	nil" && pass

NAME="corio test: the timeout report says where each task is suspended"
cat > "$TMP/hang_spec.lua" <<'LUA'
local corio = require "corio"
describe("d", function()
  it("hangs", function()
    corio.spawn(function() corio.channel():recv() end).name = "stuck child"
    corio.sleep(30)
  end)
end)
LUA
run 30 env CORIO_TEST_TIMEOUT=0.5 "$CORIO" test "$TMP/hang_spec.lua"
check_rc 1 && check_out_has "test timed out after 0.5 s; its tasks then:" \
  && check_out_has "'hangs' (the test's own task, running) suspended at $TMP/hang_spec.lua:5" \
  && check_out_has "'stuck child' (running, child of 'hangs') suspended at $TMP/hang_spec.lua:4" \
  && pass

finish
