# lib.sh: helpers shared by the CLI tests in this folder; sourced, not run.
# Each test script takes the corio binary as $1 (or $CORIO), runs checks
# that record failures instead of stopping at the first one, and ends with
# `finish`, which prints "N passed, N failed" and fails if any check did.

set -euo pipefail

CORIO="${1:-${CORIO:-}}"
if [ -z "$CORIO" ]; then
  echo "usage: $0 path/to/corio   (or set CORIO)" >&2
  exit 2
fi
if [ ! -x "$CORIO" ]; then
  echo "FAIL: corio binary '$CORIO' is missing or not executable" >&2
  exit 1
fi
CORIO="$(cd "$(dirname "$CORIO")" && pwd)/$(basename "$CORIO")"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FIX="$HERE/fixtures"
REPO="$(cd "$HERE/../.." && pwd)"
LUAJIT="${LUAJIT:-luajit}"
# Paths for a stock luajit to find corio (rule 11's synchronous fallback).
# CTest sets them and they come first; the source tree and a build tree
# next to the binary follow, so a value that CMake's list splitting cut
# at its first ';' still works.
CORIO_LUA_PATH="${CORIO_LUA_PATH:+$CORIO_LUA_PATH;}$REPO/lua/?.lua;$REPO/lua/?/init.lua;;"
CORIO_LUA_CPATH="${CORIO_LUA_CPATH:+$CORIO_LUA_CPATH;}$(dirname "$CORIO")/lib/lua/5.1/?.so;;"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
PASSES=0
FAILS=0
NAME=""
RC=0
OUT=""
ERR=""

pass() { PASSES=$((PASSES + 1)); echo "ok - $NAME"; }
fail() {
  FAILS=$((FAILS + 1))
  {
    echo "FAIL - $NAME: $*"
    echo "  exit code: $RC"
    echo "  stdout: $(head -c 2000 "$TMP/out" 2>/dev/null | sed 's/^/    /')"
    echo "  stderr: $(head -c 2000 "$TMP/err" 2>/dev/null | sed 's/^/    /')"
  } >&2
}

# run LIMIT CMD...: run CMD with a time limit in seconds; sets RC, OUT, ERR.
run() {
  local limit="$1"
  shift
  set +e
  timeout -k 2 "$limit" "$@" </dev/null >"$TMP/out" 2>"$TMP/err"
  RC=$?
  set -e
  OUT="$(cat "$TMP/out")"
  ERR="$(cat "$TMP/err")"
}

# Each check below returns 1 after reporting, so a test reads as
#   NAME="..."; run 10 "$CORIO" x.lua
#   check_rc 0 && check_out_eq "hello" && pass
check_rc() {
  if [ "$RC" -eq 124 ] || [ "$RC" -eq 137 ]; then
    fail "timed out (it hung); expected exit code $1"
    return 1
  fi
  if [ "$RC" -ne "$1" ]; then
    fail "expected exit code $1, got $RC"
    return 1
  fi
}
check_out_eq() {
  if [ "$OUT" != "$1" ]; then
    fail "expected stdout to be exactly:
$1"
    return 1
  fi
}
check_out_has() {
  if ! grep -qF -- "$1" "$TMP/out"; then
    fail "expected stdout to contain '$1'"
    return 1
  fi
}
check_out_lacks() {
  if grep -qF -- "$1" "$TMP/out"; then
    fail "expected stdout not to contain '$1'"
    return 1
  fi
}
check_err_has() {
  if ! grep -qF -- "$1" "$TMP/err"; then
    fail "expected stderr to contain '$1'"
    return 1
  fi
}
check_err_has_re() {
  if ! grep -qE -- "$1" "$TMP/err"; then
    fail "expected stderr to match /$1/"
    return 1
  fi
}
check_err_lacks() {
  if grep -qF -- "$1" "$TMP/err"; then
    fail "expected stderr not to contain '$1'"
    return 1
  fi
}
# check_order STREAMFILE A B: line containing A comes before line with B
check_order() {
  local a b
  a="$(grep -nF -- "$2" "$1" | head -n1 | cut -d: -f1)"
  b="$(grep -nF -- "$3" "$1" | head -n1 | cut -d: -f1)"
  if [ -z "$a" ] || [ -z "$b" ] || [ "$a" -ge "$b" ]; then
    fail "expected '$2' before '$3'"
    return 1
  fi
}

# luajit_run LIMIT ARGS...: a stock luajit that finds corio's modules
luajit_run() {
  local limit="$1"
  shift
  run "$limit" env LUA_PATH="$CORIO_LUA_PATH" LUA_CPATH="$CORIO_LUA_CPATH" \
    "$LUAJIT" "$@"
}

# Background runs (signal tests): start, wait_for, reap.
PID=""
# start CMD...: run CMD in the background, output to $TMP/out and $TMP/err
start() {
  : >"$TMP/out"
  : >"$TMP/err"
  "$@" </dev/null >"$TMP/out" 2>"$TMP/err" &
  PID=$!
}
# wait_for TEXT SECONDS: until stdout has TEXT; 1 if it never came (or
# the process ended first). wait_err: the same for stderr.
wait_in() {
  local i
  for ((i = 0; i < $3 * 20; i++)); do
    if grep -qF -- "$2" "$1"; then return 0; fi
    if ! kill -0 "$PID" 2>/dev/null; then break; fi
    sleep 0.05
  done
  grep -qF -- "$2" "$1"
}
wait_for() { wait_in "$TMP/out" "$@"; }
wait_err() { wait_in "$TMP/err" "$@"; }
# reap SECONDS: wait for the background process to exit; sets RC (124 when
# it had to be killed), OUT, ERR and ELAPSED_MS
reap() {
  local i t0
  t0=$(date +%s%N)
  for ((i = 0; i < $1 * 20; i++)); do
    if ! kill -0 "$PID" 2>/dev/null; then break; fi
    sleep 0.05
  done
  if kill -0 "$PID" 2>/dev/null; then
    kill -KILL "$PID" 2>/dev/null || true
    set +e; wait "$PID" 2>/dev/null; set -e
    RC=124
  else
    set +e; wait "$PID" 2>/dev/null; RC=$?; set -e
  fi
  ELAPSED_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
  OUT="$(cat "$TMP/out")"
  ERR="$(cat "$TMP/err")"
}

finish() {
  echo "$(basename "$0" .sh): $PASSES passed, $FAILS failed"
  [ "$FAILS" -eq 0 ]
}
