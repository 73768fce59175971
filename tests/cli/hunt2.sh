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

NAME="corio test: tasks a test left that ignore their cancel (shield) are named on stderr when the timeout fires, not a silent wait"
cat >"$TMP/shield_spec.lua" <<'LUA'
local corio = require "corio"
local cb = require "corio.busted"
describe("leftover", function()
  it("leaves a shielded task", cb.timeout(0.3, function()
    corio.spawn(function() corio.shield(function() corio.sleep(1) end) end)
    corio.sleep(0.01)
  end))
  it("then goes on", function() assert.equal(1, 1) end)
end)
LUA
run 20 "$CORIO" test "$TMP/shield_spec.lua"
check_rc 1 && check_err_has "ignores cancellation (inside corio.shield?); the run waits for it" \
  && check_err_has "shield_spec.lua:5" && check_out_has "1 success / 1 failure" \
  && check_out_has "test left 1 task running" && pass

finish
