#!/usr/bin/env bash
# dogfood2.sh: dogfooding round 2 as `corio script.lua`: a worker pool
# with graceful shutdown (fixtures/dogfood2/pool.lua), stopped by Ctrl-C
# (SIGINT) or by its deadline: in-flight jobs run their defers (shielded
# ones finish), the results are flushed to a file, and the exit status is
# 130 for SIGINT, 0 for the deadline. The specs of round 2 are
# tests/spec/dogfood2_spec.lua.
# Usage: dogfood2.sh path/to/corio
. "$(dirname "$0")/lib.sh"
set -m   # background jobs get SIGINT, as in an interactive shell

# check_results FILE: every line a correct job result, the summary last,
# and every started job cleaned up; sets DONE
check_results() {
  local f="$1" last n st cl
  if [ ! -s "$f" ]; then fail "no results file"; return 1; fi
  last="$(tail -n1 "$f")"
  read -r n st cl < <(echo "$last" | sed -n 's/^done \([0-9]*\) started \([0-9]*\) cleaned \([0-9]*\)$/\1 \2 \3/p')
  if [ -z "${n:-}" ]; then fail "no summary line: $last"; return 1; fi
  if [ "$(($(wc -l <"$f") - 1))" -ne "$n" ]; then fail "$n results announced, $(($(wc -l <"$f") - 1)) written"; return 1; fi
  if [ "$st" -ne "$cl" ]; then fail "$st jobs started, $cl cleaned up"; return 1; fi
  if [ "$st" -lt "$n" ] || [ "$st" -gt $((n + 2)) ]; then
    fail "$st started for $n done (at most the two unshielded workers are cut short)"; return 1
  fi
  if ! awk '$0 ~ /^worker/ { j = $4; if ($6 != j * (j + 1) / 2) bad = 1 } END { exit bad }' "$f"; then
    fail "a wrong result line"; return 1
  fi
  DONE="$n"
}

NAME="SIGINT: the pool stops, in-flight jobs clean up, results flushed, exit 130"
start "$CORIO" "$FIX/dogfood2/pool.lua" "$TMP/results.txt" 60
if wait_for "ready" 20; then
  sleep 0.2
  kill -INT "$PID"
  reap 10
  check_rc 130 && check_results "$TMP/results.txt" \
    && check_out_has "flushed $DONE" && check_out_lacks "finished" \
    && check_out_lacks "deadline" && pass
else
  reap 1
  fail "the pool never printed 'ready'"
fi

NAME="the deadline: the same shutdown, the program goes on and exits 0"
run 30 "$CORIO" "$FIX/dogfood2/pool.lua" "$TMP/results2.txt" 0.4
check_rc 0 && check_results "$TMP/results2.txt" && check_out_has "deadline" \
  && check_out_has "flushed $DONE" && check_order "$TMP/out" "deadline" "flushed" \
  && { [ "$DONE" -ge 8 ] || { fail "only $DONE jobs in 0.4 s"; false; }; } && pass

finish
