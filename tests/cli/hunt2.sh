#!/usr/bin/env bash
# hunt2.sh: CLI regressions found by a second bug hunt, checked against
# what luajit does with the same command line (SPEC §5).
# Usage: hunt2.sh path/to/corio   (or CORIO=path/to/corio)
. "$(dirname "$0")/lib.sh"

NAME="several -e run in order, as luajit (only the last one ran)"
run 10 "$LUAJIT" -e 'X = 1' -e 'print("x", X)'
want="$OUT"
run 10 "$CORIO" -e 'X = 1' -e 'print("x", X)'
check_rc 0 && check_out_eq "$want" && check_out_eq "x	1" && pass

NAME="several -e before a script: each runs, then the script, with its args"
printf 'print("script", X + Y, ...)\n' >"$TMP/s.lua"
run 10 "$CORIO" -e 'X = 1' -e 'Y = 2' "$TMP/s.lua" "a b"
check_rc 0 && check_out_eq "script	3	a b" && pass

NAME="a failing -e stops there: later -e and the script do not run, exit 1"
run 10 "$CORIO" -e 'error("first fails")' -e 'print("second ran")' "$TMP/s.lua"
check_rc 1 && check_err_has "first fails" && check_out_lacks "second ran" \
  && check_out_lacks "script" && pass

# `corio test` and tasks that ignore their cancel: tests/cli/test_leftover.sh

finish
