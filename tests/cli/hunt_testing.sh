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

# A to_thread worker that never ends (a loop, a blocking call) outlives
# its cancelled caller, and corio.run waits for it: a test that timed out
# there hung `corio test` for good, timeout and all, and one whose worker
# took 4 s held the run 4 s past its timeout. The grace after a cancel
# now covers the test's pending work (to_thread workers, fs and HTTP
# requests, host ops) as it covers tasks: after it, the run stops.
NAME="a test whose to_thread worker never ends: the run stops after its timeout and grace"
cat >"$TMP/stuck_worker_spec.lua" <<'LUA'
local corio = require "corio"
local cb = require "corio.busted"
it("passes first", function() end)
it("worker loops forever", cb.timeout(0.3, function()
  corio.to_thread(function() while true do end end)
end))
it("does not run", function() print("RAN AFTER THE STOP") end)
LUA
start=$SECONDS
run 30 "$CORIO" test "$TMP/stuck_worker_spec.lua"
took=$((SECONDS - start))
check_rc 1 \
  && check_out_has "1 success / 1 failure" \
  && check_out_has "test timed out after 0.3 s" \
  && check_err_has "1 operation (a to_thread worker, a file or HTTP request, a host op) still running 0.3 s after its task was cancelled" \
  && check_out_lacks "RAN AFTER THE STOP" \
  && if [ "$took" -gt 10 ]; then fail "took $took s"; else pass; fi

NAME="a test whose worker ends within the grace: an ordinary timeout, the run goes on"
cat >"$TMP/slow_worker_spec.lua" <<'LUA'
local corio = require "corio"
local cb = require "corio.busted"
it("worker ends soon after the timeout", cb.timeout(0.3, function()
  corio.to_thread(function()
    local ffi = require "ffi"
    ffi.cdef "int usleep(unsigned int);"
    ffi.C.usleep(400000)
  end)
end))
it("runs next", function() print("RAN NEXT") end)
LUA
run 30 "$CORIO" test "$TMP/slow_worker_spec.lua"
check_rc 1 \
  && check_out_has "1 success / 1 failure" \
  && check_out_has "test timed out after 0.3 s" \
  && check_out_has "RAN NEXT" \
  && pass

# busted's --lua re-runs the specs under another interpreter, which
# cannot work inside corio: `corio test --lua=luajit` died with busted's
# "attempt to concatenate a nil value". It is now refused by name.
for opt in --lua=luajit "--lua luajit"; do
  NAME="corio test $opt: refused, naming the option"
  # shellcheck disable=SC2086
  run 30 "$CORIO" test $opt "$TMP/quick_spec.lua"
  check_rc 1 \
    && check_err_has "corio test: error: --lua is not supported" \
    && check_err_lacks "attempt to" \
    && pass
done

NAME="lua = ... in a .busted file: refused the same way"
mkdir -p "$TMP/withcfg"
cp "$TMP/quick_spec.lua" "$TMP/withcfg/"
printf 'return { default = { lua = "luajit" } }\n' >"$TMP/withcfg/.busted"
run 30 "$CORIO" test -C "$TMP/withcfg" quick_spec.lua
check_rc 1 \
  && check_err_has "corio test: error: --lua is not supported" \
  && check_err_lacks "attempt to" \
  && pass

NAME="--ignore-lua is accepted"
run 30 "$CORIO" test --ignore-lua "$TMP/quick_spec.lua"
check_rc 0 && check_out_has "1 success / 0 failures" && pass

finish
