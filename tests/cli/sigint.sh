#!/usr/bin/env bash
# sigint.sh: rule 12: the first SIGINT cancels the root task, cleanup
# (defer, shield) runs, and the process exits 130; a second SIGINT exits
# at once. Under a stock luajit, corio.run raises kind "interrupted"; in
# the main chunk under corio, "cancelled" (the root is cancelled).
# Usage: sigint.sh path/to/corio   (or CORIO=path/to/corio)
. "$(dirname "$0")/lib.sh"

# Job control gives background jobs their own process group with SIGINT
# not ignored, as in an interactive shell.
set -m

NAME="rule 12: SIGINT cancels the root; defer and shield cleanup run; exit 130"
start "$CORIO" "$FIX/sigint.lua"
if wait_for "ready" 10; then
  sleep 0.1
  kill -INT "$PID"
  reap 10
  check_rc 130 && check_out_has "$(printf 'main sleep ended\tfalse\ttrue')" \
    && check_out_has "child cleanup done" && check_out_has "root defer ran" \
    && check_order "$TMP/out" "child cleanup done" "root defer ran" && pass
else
  reap 1
  fail "the fixture never printed 'ready'"
fi

NAME="rule 12: SIGINT ends a plain sleep in -e code with exit 130"
start "$CORIO" -e 'local corio = require("corio"); io.stdout:setvbuf("no"); print("ready"); corio.sleep(60)'
if wait_for "ready" 10; then
  sleep 0.1
  kill -INT "$PID"
  reap 10
  check_rc 130 && pass
else
  reap 1
  fail "never printed 'ready'"
fi

NAME="rule 12: a second SIGINT exits at once, cutting cleanup short"
start "$CORIO" "$FIX/sigint_stubborn.lua"
if wait_for "ready" 10; then
  sleep 0.1
  kill -INT "$PID"
  if wait_for "cleanup started" 5; then
    sleep 0.1
    kill -INT "$PID"
    reap 10
    check_rc 130 && check_out_lacks "stubborn cleanup done" && {
      if [ "$ELAPSED_MS" -le 2000 ]; then pass
      else fail "took ${ELAPSED_MS} ms after the second SIGINT"; fi
    }
  else
    reap 1
    fail "the first SIGINT did not start the cleanup"
  fi
else
  reap 1
  fail "the fixture never printed 'ready'"
fi

NAME="rule 12: under luajit, SIGINT makes corio.run raise kind 'interrupted'"
start env LUA_PATH="$CORIO_LUA_PATH" LUA_CPATH="$CORIO_LUA_CPATH" \
  "$LUAJIT" "$FIX/sigint_run.lua"
if wait_for "ready" 10; then
  sleep 0.1
  kill -INT "$PID"
  reap 10
  check_rc 0 && check_out_has "run defer ran" \
    && check_out_has "$(printf 'run raised\tfalse\tinterrupted')" && pass
else
  reap 1
  fail "the fixture never printed 'ready'"
fi

NAME="rule 12: the same script under corio: its corio.run raises kind 'cancelled', exit 130"
start "$CORIO" "$FIX/sigint_run.lua"
if wait_for "ready" 10; then
  sleep 0.1
  kill -INT "$PID"
  reap 10
  check_rc 130 && check_out_has "run defer ran" \
    && check_out_has "$(printf 'run raised\tfalse\tcancelled')" && pass
else
  reap 1
  fail "the fixture never printed 'ready'"
fi

# A process started with SIGINT ignored (what a non-interactive shell
# does to a background job: `corio app.lua & ... kill -INT $!` in a
# script) still takes it during a run, as Node.js does (CPython leaves an
# ignored SIGINT ignored): a script can stop its corio job gracefully.
NAME="rule 12: a SIGINT ignored at start is taken during a run: exit 130"
start bash -c 'trap "" INT; exec "$0" -e "local corio = require(\"corio\"); io.stdout:setvbuf(\"no\"); print(\"ready\"); corio.sleep(0.6); print(\"slept on\")"' "$CORIO"
if wait_for "ready" 10; then
  sleep 0.1
  kill -INT "$PID"
  reap 10
  check_rc 130 && check_out_lacks "slept on" && pass
else
  reap 1
  fail "never printed 'ready'"
fi

finish
