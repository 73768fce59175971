#!/usr/bin/env bash
# hunt_rules.sh: process-level checks from the audit of SPEC section 1's
# rules (tests/spec/hunt_rules_spec.lua has the rest). These guard
# behaviour that was right when the audit checked it, combining features
# the other CLI tests take one at a time.
# Usage: hunt_rules.sh path/to/corio   (or CORIO=path/to/corio)
. "$(dirname "$0")/lib.sh"

set -m

cat >"$TMP/sigint_mix.lua" <<'LUA'
local corio = require("corio")
io.stdout:setvbuf("no")
corio.scope(function(s)
  s:spawn(function()
    corio.defer(function()
      corio.shield(function() corio.sleep(0.2); print("child cleanup done") end)
    end)
    corio.sleep(100)
  end)
  s:spawn(function()
    -- swallows the Cancelled, cleans up in a shield, then reaches a
    -- checkpoint: rule 4 raises Cancelled again there
    local ok, e = pcall(corio.sleep, 100)
    print("swallower caught", corio.is_cancelled(e))
    corio.shield(function() corio.sleep(0.1) end)
    print("swallower after shield")
    corio.sleep(0.01)
    print("NOT REACHED")
  end)
  corio.defer(function()
    corio.shield(function() corio.sleep(0.1); print("scope cleanup done") end)
  end)
  print("ready")
  corio.sleep(100)
end)
print("NOT REACHED either")
LUA

NAME="rule 12 with rule 4: cleanup that sleeps in shields, and a task that swallows Cancelled"
start "$CORIO" "$TMP/sigint_mix.lua"
if wait_for "ready" 10; then
  sleep 0.1
  kill -INT "$PID"
  reap 10
  check_rc 130 && check_out_has "$(printf 'swallower caught\ttrue')" \
    && check_out_has "swallower after shield" \
    && check_out_has "child cleanup done" && check_out_has "scope cleanup done" \
    && check_out_lacks "NOT REACHED" \
    && check_order "$TMP/out" "child cleanup done" "scope cleanup done" && pass
else
  reap 1
  fail "the script never printed 'ready'"
fi

NAME="rule 14 with rule 11: a deadlock inside a shield in the main chunk's corio.run ends the program, naming the task"
cat >"$TMP/dl_shield.lua" <<'LUA'
local corio = require("corio")
local ok, e = pcall(corio.run, function()
  corio.shield(function() corio.event():wait() end)
end)
print("main chunk went on")
LUA
run 15 "$CORIO" "$TMP/dl_shield.lua"
check_rc 1 && check_err_has "deadlock" && check_err_has "waits in event wait at" \
  && check_out_lacks "main chunk went on" && pass

NAME="rule 11: the same deadlock under luajit is raised by corio.run, and the script goes on"
luajit_run 15 "$TMP/dl_shield.lua"
check_rc 0 && check_out_has "main chunk went on" && pass

finish
