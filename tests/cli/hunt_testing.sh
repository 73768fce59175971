#!/usr/bin/env bash
# hunt_testing.sh: `corio test` defects found hunting the busted
# integration (SPEC §6). Usage: hunt_testing.sh path/to/corio
. "$(dirname "$0")/lib.sh"

cat >"$TMP/quick_spec.lua" <<'LUA'
local corio = require "corio"
it("sleeps a little", function() corio.sleep(0.01) end)
LUA

# CORIO_TEST_TIMEOUT that is not a number of seconds (a unit, a typo, a
# negative number) was ignored without a word: the run went on with the
# default 5 s, so a suite that needed 30 s timed out with no hint why. As
# pytest-timeout does with a bad PYTEST_TIMEOUT, the run now stops before
# any test, naming the variable and the value.
for bad in 30s abc -1 nan; do
  NAME="CORIO_TEST_TIMEOUT=$bad: the run stops, naming the variable and the value"
  run 30 env CORIO_TEST_TIMEOUT="$bad" "$CORIO" test "$TMP/quick_spec.lua"
  check_rc 1 \
    && check_err_has "CORIO_TEST_TIMEOUT" \
    && check_err_has "'$bad'" \
    && check_out_lacks "success" \
    && pass
done

for good in 0.5 10 off false 0 inf ""; do
  NAME="CORIO_TEST_TIMEOUT='$good' is accepted"
  run 30 env CORIO_TEST_TIMEOUT="$good" "$CORIO" test "$TMP/quick_spec.lua"
  check_rc 0 && check_out_has "1 success / 0 failures" && pass
done

NAME="CORIO_TEST_TIMEOUT=0.2 times out a test that sleeps 1 s"
cat >"$TMP/slow_spec.lua" <<'LUA'
local corio = require "corio"
it("sleeps", function() corio.sleep(1) end)
LUA
run 30 env CORIO_TEST_TIMEOUT=0.2 "$CORIO" test "$TMP/slow_spec.lua"
check_rc 1 && check_out_has "test timed out after 0.2 s" && pass

# A failed corio.testing.assert_checkpoints was a busted "Error" (a
# string error), where a failed assert.* is a "Failure"; pytest-trio's
# assert_checkpoints fails the test with an AssertionError.
NAME="a failed assert_checkpoints is a test failure at the caller's line, also in a child task"
cat >"$TMP/ckpt_spec.lua" <<'LUA'
local testing = require "corio.testing"
local corio = require "corio"
it("no checkpoint", function()
  local x = 1
  testing.assert_checkpoints(function() return x end)
end)
it("in a child", function()
  corio.spawn(function()
    testing.assert_checkpoints(function() return 1 end)
  end):join()
end)
it("passes", function()
  assert.equal(2, testing.assert_checkpoints(function() corio.yield() return 2 end))
end)
LUA
run 30 "$CORIO" test "$TMP/ckpt_spec.lua"
check_rc 2 \
  && check_out_has "1 success / 2 failures / 0 errors" \
  && check_out_has "Failure -> $TMP/ckpt_spec.lua @ 3" \
  && check_out_has "$TMP/ckpt_spec.lua:5: assert_checkpoints: the function returned without passing through a checkpoint" \
  && check_out_has "$TMP/ckpt_spec.lua:9: assert_checkpoints" \
  && pass

finish
