#!/usr/bin/env bash
# test_leftover.sh: `corio test` when cancelled tasks do not end (SPEC §6).
# A task inside corio.shield, or one that catches Cancelled in a loop,
# ignores the cancel the runner sends when a test times out or leaves it
# running; corio.run would wait for it forever. The runner waits a grace
# (the body's timeout) after the cancel, then fails the test, names the
# tasks still running and where they are suspended, prints busted's
# summary so far and exits non-zero. A task that catches Cancelled around
# a bare checkpoint never blocks, but it spends its budget there (rule 15)
# and so lets the runner's timer fire. `run` puts a time limit on every
# command, so a hang fails the check (exit 124) instead of the suite.
# Usage: test_leftover.sh path/to/corio   (or CORIO=path/to/corio)
. "$(dirname "$0")/lib.sh"

# The timeouts below are set in the spec files: the sanitizer run sets
# CORIO_TEST_TIMEOUT=60 for every test.

NAME="a test leaving a shielded task and one that swallows Cancelled: the run stops, names both, reports the test, exits non-zero"
cat >"$TMP/stuck_spec.lua" <<'LUA'
local corio = require "corio"
local cb = require "corio.busted"
describe("stuck", function()
  it("passes first", function() assert.equal(1, 1) end)
  it("leaves stubborn tasks", cb.timeout(0.3, function()
    local s = corio.spawn(function()
      corio.shield(function() corio.sleep(1e6) end)
    end)
    s.name = "shielded sleeper"
    local l = corio.spawn(function()
      while true do
        local ok = pcall(corio.sleep, 0.05)
        if not ok then corio.shield(corio.sleep, 0.05) end
      end
    end)
    l.name = "cancel swallower"
    corio.sleep(0.01)
  end))
  it("does not run", function() print("RAN AFTER THE STOP") end)
end)
LUA
start=$SECONDS
run 60 "$CORIO" test "$TMP/stuck_spec.lua"
took=$((SECONDS - start))
check_rc 1 \
  && check_err_has "corio test: leaves stubborn tasks: 2 tasks still running 0.3 s after they were cancelled" \
  && check_err_has "'shielded sleeper' (running, child of 'leaves stubborn tasks') suspended at $TMP/stuck_spec.lua:7" \
  && check_err_has_re "'cancel swallower' \(running, child of 'leaves stubborn tasks'\) suspended at $TMP/stuck_spec.lua:1[23]" \
  && check_err_has "stopping the run here" \
  && check_out_has "1 success / 1 failure / 0 errors" \
  && check_out_has "Failure -> $TMP/stuck_spec.lua @ 5" \
  && check_out_has "stuck leaves stubborn tasks" \
  && check_out_has "test left 2 tasks running:" \
  && check_out_has "corio test stopped the run here:" \
  && check_out_lacks "RAN AFTER THE STOP" \
  && if [ "$took" -gt 30 ]; then fail "took $took s"; else pass; fi

NAME="a test that times out inside its own shield: the stop names the test's own task and its suspension site"
cat >"$TMP/own_spec.lua" <<'LUA'
local corio = require "corio"
local cb = require "corio.busted"
it("fails first", function() assert.equal(1, 2) end)
it("shields itself", cb.timeout(0.2, function()
  corio.shield(function() corio.sleep(1e6) end)
end))
it("does not run", function() print("RAN AFTER THE STOP") end)
LUA
run 60 "$CORIO" test "$TMP/own_spec.lua"
# the exit status counts the earlier failure too, as busted's does
check_rc 2 \
  && check_err_has "corio test: shields itself: 1 task still running 0.2 s after it was cancelled" \
  && check_err_has "'shields itself' (the test's own task, running) suspended at $TMP/own_spec.lua:5" \
  && check_out_has "0 successes / 2 failures" \
  && check_out_has "test timed out after 0.2 s; its tasks then:" \
  && check_out_lacks "RAN AFTER THE STOP" && pass

NAME="the body raised with a shielded child: the stop says what the test raised"
cat >"$TMP/raise_spec.lua" <<'LUA'
local corio = require "corio"
local cb = require "corio.busted"
it("raises", cb.timeout(0.2, function()
  corio.spawn(function() corio.shield(corio.sleep, 1e6) end)
  corio.sleep(0.01)
  error("the body's own error")
end))
LUA
run 60 "$CORIO" test "$TMP/raise_spec.lua"
check_rc 1 && check_err_has "suspended at $TMP/raise_spec.lua:4" \
  && check_out_has "test raised: $TMP/raise_spec.lua:6: the body's own error" \
  && check_out_has "1 task still running 0.2 s after it was cancelled" \
  && pass

NAME="a task that catches Cancelled around a bare checkpoint spins without holding the loop: the run stops and says where it spins"
cat >"$TMP/spin_spec.lua" <<'LUA'
local corio = require "corio"
local cb = require "corio.busted"
local how = os.getenv("HOW")
it("spins once cancelled", cb.timeout(0.3, function()
  local t = corio.spawn(function()
    while true do
      pcall(corio.sleep, 0.05)
    end
  end)
  t.name = "spinner"
  corio.sleep(0.01)
  if how == "timeout" then corio.sleep(100) end
  if how == "child" then
    corio.spawn(function() error("a child's error") end)
    corio.sleep(100)
  end
end))
it("does not run", function() print("RAN AFTER THE STOP") end)
LUA
for how in left timeout child; do
  NAME="spinning task, cancelled because $how: the run stops"
  run 60 env HOW=$how "$CORIO" test "$TMP/spin_spec.lua"
  check_rc 1 \
    && check_err_has_re "'spinner' \(running, child of 'spins once cancelled'\) suspended at $TMP/spin_spec.lua:7$" \
    && check_out_has "0 successes / 1 failure" \
    && check_out_has "corio test stopped the run here:" \
    && check_out_lacks "RAN AFTER THE STOP" && pass
done

NAME="other output handlers get the end of the run too (TAP prints its plan)"
run 60 "$CORIO" test -o TAP "$TMP/stuck_spec.lua"
check_rc 1 && check_out_has "ok 1 - stuck passes first" \
  && check_out_has "not ok 2 - stuck leaves stubborn tasks" \
  && check_out_has "1..2" && check_out_lacks "RAN AFTER THE STOP" && pass

NAME="a plain timeout is unchanged: it reports where the test was suspended and the run goes on"
cat >"$TMP/plain_spec.lua" <<'LUA'
local corio = require "corio"
local cb = require "corio.busted"
it("hangs", cb.timeout(0.2, function()
  corio.spawn(function() corio.sleep(1e6) end)
  corio.event():wait()
end))
it("then goes on", function() print("RAN NEXT") end)
LUA
run 60 "$CORIO" test "$TMP/plain_spec.lua"
check_rc 1 && check_out_has "RAN NEXT" \
  && check_out_has "1 success / 1 failure" \
  && check_out_has "$TMP/plain_spec.lua:5: test timed out after 0.2 s; its tasks then:" \
  && check_out_has "'hangs' (the test's own task, running) suspended at $TMP/plain_spec.lua:5" \
  && check_out_has "suspended at $TMP/plain_spec.lua:4" \
  && check_err_lacks "stopping the run" && pass

NAME="a shielded leftover that ends within the grace: the test fails and the run goes on"
cat >"$TMP/shield_spec.lua" <<'LUA'
local corio = require "corio"
local cb = require "corio.busted"
describe("leftover", function()
  it("leaves a shielded task", cb.timeout(0.5, function()
    corio.spawn(function() corio.shield(function() corio.sleep(0.1) end) end)
    corio.sleep(0.01)
  end))
  it("then goes on", function() assert.equal(1, 1) end)
end)
LUA
run 60 "$CORIO" test "$TMP/shield_spec.lua"
check_rc 1 && check_out_has "1 success / 1 failure" \
  && check_out_has "test left 1 task running" \
  && check_out_has "shield_spec.lua:5" && check_err_lacks "stopping the run" \
  && pass

finish
