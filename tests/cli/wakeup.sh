#!/usr/bin/env bash
# A task made ready by a libuv callback that ran before the loop polled
# (a timer already due when the loop was entered) must run at once, not
# after the next unrelated event: another active handle (a far real-clock
# sleep) would otherwise keep the poll blocked for seconds.
set -u
CORIO=${1:-build/corio}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cat > "$TMP/w.lua" <<'LUA'
local corio = require "corio"
local testing = require "corio.testing"
corio.scope(function(s)
  s:spawn(testing.sleep_real, 3)
  local t0 = corio.now()
  s:spawn(function() local c = os.clock() while os.clock() - c < 0.06 do end end)
  corio.sleep(0.01)            -- overdue by the time the loop polls
  local a = corio.now() - t0
  t0 = corio.now()
  s:spawn(function() local c = os.clock() while os.clock() - c < 0.06 do end end)
  testing.sleep_real(0.01)     -- a libuv timer of its own, overdue too
  local b = corio.now() - t0
  print(("%.3f %.3f"):format(a, b))
  s:cancel()
end)
LUA
out=$("$CORIO" "$TMP/w.lua" 2>&1)
read -r a b <<< "$out"
pass=0 fail=0
if awk "BEGIN{exit !($a < 1)}" 2>/dev/null; then pass=$((pass+1)); echo "ok - an overdue sleep wakes at once ($a s)"
else fail=$((fail+1)); echo "FAIL - an overdue sleep wakes at once: $out"; fi
if awk "BEGIN{exit !($b < 1)}" 2>/dev/null; then pass=$((pass+1)); echo "ok - an overdue libuv callback wake-up runs at once ($b s)"
else fail=$((fail+1)); echo "FAIL - an overdue libuv callback wake-up runs at once: $out"; fi
echo "wakeup: $pass passed, $fail failed"
[ $fail = 0 ]
