#!/usr/bin/env bash
# dogfood4.sh: dogfooding round 4 as `corio script.lua`: a long-running
# service (fixtures/dogfood4/service.lua: health checkers, a worker with
# a request in flight, a shielded goodbye request in the root's defer)
# stopped by Ctrl-C (SIGINT): every defer runs, the in-flight request is
# cancelled (nothing in flight at the end), the shielded request is
# answered, and the exit status is 130. The specs of round 4 are
# tests/spec/dogfood4_spec.lua.
# Usage: dogfood4.sh path/to/corio
. "$(dirname "$0")/lib.sh"
set -m   # background jobs get SIGINT, as in an interactive shell

python3 "$REPO/tests/http/dogfood_server.py" --lifetime 120 >"$TMP/srv" 2>&1 &
SRV=$!
disown "$SRV" 2>/dev/null || true
trap 'kill $SRV 2>/dev/null || true; rm -rf "$TMP"' EXIT
for _ in $(seq 200); do grep -q PORT "$TMP/srv" 2>/dev/null && break; sleep 0.05; done
PORT=$(awk '/PORT/ {print $2; exit}' "$TMP/srv")
BASE="http://127.0.0.1:$PORT"

NAME="SIGINT: the service's tasks clean up, the request in flight is cancelled, exit 130"
start "$CORIO" "$FIX/dogfood4/service.lua" "$BASE"
if wait_for "ready" 20; then
  sleep 0.1
  kill -INT "$PID"
  reap 10
  check_rc 130 && check_out_has "cleanup: checker 1" && check_out_has "cleanup: checker 2" \
    && check_out_has "cleanup: worker" && check_out_has "worker: cancelled" \
    && check_out_has "root cleanup: in_flight=0 checks>0=true" \
    && check_out_has "deregistered: 200" \
    && check_order "$TMP/out" "cleanup: worker" "root cleanup" \
    && check_out_lacks "not reached" && check_err_has "interrupted" && pass
else
  reap 1
  fail "the service never printed 'ready'"
fi

NAME="the server saw the goodbye request once, after the checks"
HITS=$(timeout 10 "$CORIO" -e "print(require('corio.http').get('$BASE/hits'):text())" 2>&1 || true)
if echo "$HITS" | grep -q '"/page/deregister": 1' && echo "$HITS" | grep -q '"/slow/work?d=60": 1'; then
  pass
else
  fail "hits: $HITS"
fi

finish
