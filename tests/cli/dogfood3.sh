#!/usr/bin/env bash
# dogfood3.sh: dogfooding round 3 as `corio script.lua`: corio.to_thread
# cut short by its caller's deadline (the worker goes on to its end and
# the program waits for it before exiting), and Ctrl-C while a worker
# computes (cleanup at once, exit 130 once the worker ended; a second
# Ctrl-C exits at once), and the messages naming tasks spawned by code
# loaded from a string (a deadlock, SIGUSR1's dump). The specs of round 3 are
# tests/spec/dogfood3_spec.lua.
# Usage: dogfood3.sh path/to/corio
. "$(dirname "$0")/lib.sh"
set -m   # background jobs get SIGINT, as in an interactive shell

NAME="a to_thread cut by move_on_after: the caller goes on, the program waits for the worker"
t0=$(date +%s%N)
run 10 "$CORIO" "$FIX/dogfood3/worker.lua" "$TMP/marker"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
check_rc 0 && check_out_has "moved on	false	true" \
  && check_out_has "marker before exit	false" \
  && { [ "$(cat "$TMP/marker" 2>/dev/null)" = "worker ended" ] || { fail "the worker did not end"; false; }; } \
  && { [ "$ms" -ge 550 ] || { fail "exited after $ms ms, before the worker ended"; false; }; } \
  && pass

NAME="Ctrl-C while a worker computes: cleanup at once, exit 130 when the worker ended"
start "$CORIO" "$FIX/dogfood3/cpu.lua" 2
if wait_for "ready" 10; then
  sleep 0.2
  kill -INT "$PID"
  if wait_for "cleanup ran" 2; then
    reap 10
    # the worker computes 2 s from its start: the exit waits for it
    check_rc 130 && check_out_lacks "finished" && check_err_has "interrupted" \
      && { [ "$ELAPSED_MS" -ge 1000 ] || { fail "exited $ELAPSED_MS ms after the cleanup, before the worker ended"; false; }; } \
      && pass
  else
    reap 10
    fail "the cleanup did not run at once"
  fi
else
  reap 1
  fail "never printed 'ready'"
fi

NAME="a second Ctrl-C exits at once, without waiting for the worker"
start "$CORIO" "$FIX/dogfood3/cpu.lua" 20
if wait_for "ready" 10; then
  sleep 0.2
  kill -INT "$PID"
  wait_for "cleanup ran" 2 || true
  kill -INT "$PID"
  reap 3
  check_rc 130 && check_out_has "cleanup ran" && check_out_lacks "finished" && pass
else
  reap 1
  fail "never printed 'ready'"
fi

# The first iterator loops of a process, compiled by LuaJIT (a hot loop)
# and left early: the trace kept the iterator closure, and so its file or
# stream, from the collector (fs.lines' file stayed open; a dropped
# stream held its pooled connection, the next request timed out in phase
# pool). Each in a fresh process: after three closures of a prototype
# LuaJIT no longer specialises to one.
for what in lines flines chunks bytes hlines chan; do
  case "$what" in
    lines) it="fs.lines' file" ;; flines) it="f:lines()'s file" ;;
    chunks) it="f:chunks()'s file" ;; bytes) it="iter_bytes' stream" ;;
    hlines) it="iter_lines' stream" ;; chan) it="ch:iter()'s channel and its values" ;;
  esac
  NAME="a compiled loop left early does not keep $it from the collector"
  run 30 env CORIO_SOURCE_DIR="$REPO" "$CORIO" "$FIX/dogfood3/jit_iter.lua" "$REPO" "$what"
  check_rc 0 && check_out_eq "ok $what" && pass
done

# A chunk loaded from a string is named by its code: messages show it as
# Lua's short_src does, [string "first line..."], not the whole code.
SHOWN='[string "local corio, ev = require('"'"'corio'"'"'), ......"]'
NAME="a deadlock names the spawn site of code loaded from a string as Lua does"
run 10 "$CORIO" "$FIX/dogfood3/plugin.lua" deadlock
check_rc 1 && check_err_has "deadlock" && check_err_has "spawned at $SHOWN:3" \
  && check_err_lacks "long comment" && pass

NAME="SIGUSR1's task tree names it the same way"
start "$CORIO" "$FIX/dogfood3/plugin.lua" usr1
if wait_for "ready" 10; then
  kill -USR1 "$PID"
  reap 10
  check_rc 0 && check_out_has "deadline" && check_err_has "(spawned at $SHOWN:3)" \
    && check_err_has "(spawned at $SHOWN:4)" && check_err_lacks "long comment" && pass
else
  reap 1
  fail "never printed 'ready'"
fi

finish
