#!/usr/bin/env bash
# Every example in examples/ runs here, so none rots (the embedding host
# runs as its own test). The HTTP examples run against the test server.
set -u
CORIO=${1:-build/corio}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d)
pass=0 fail=0
srv=
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; sed 's/^/    /' "$TMP/out" | tail -20; }

timeout 60 "$CORIO" "$ROOT/examples/demo.lua" > "$TMP/out" 2>&1
if [ $? = 0 ] && grep -q "gathered user 2, user 3, user 4" "$TMP/out" \
   && grep -q "at most 2 ran at once" "$TMP/out" && grep -q "kind=timeout" "$TMP/out" \
   && grep -q "channel delivered 1 4 9 16 25" "$TMP/out"; then ok "examples/demo.lua"
else bad "examples/demo.lua"; fi

timeout 120 "$CORIO" "$ROOT/examples/fs_upper.lua" > "$TMP/out" 2>&1
if [ $? = 0 ]; then ok "examples/fs_upper.lua"; else bad "examples/fs_upper.lua"; fi

if [ -f "$ROOT/examples/http_fetch.lua" ]; then
  # (upload_server.py: server.py's routes, and /sum for the upload)
  python3 "$ROOT/tests/http/upload_server.py" > "$TMP/srv" 2>&1 &
  srv=$!
  for _ in $(seq 100); do grep -q PORT "$TMP/srv" 2>/dev/null && break; sleep 0.05; done
  port=$(awk '/PORT/ {print $2; exit}' "$TMP/srv")
  timeout 60 "$CORIO" "$ROOT/examples/http_fetch.lua" "http://127.0.0.1:$port" /bytes/1024 > "$TMP/out" 2>&1
  if [ $? = 0 ] && grep -q "^one:" "$TMP/out" && grep -q "^gather:" "$TMP/out" && grep -q "^map:" "$TMP/out"; then
    ok "examples/http_fetch.lua"
  else bad "examples/http_fetch.lua (port $port)"; fi
  if [ -f "$ROOT/examples/http_download.lua" ]; then
    timeout 60 "$CORIO" "$ROOT/examples/http_download.lua" "http://127.0.0.1:$port/bytes/5000000" "$TMP/dl.bin" > "$TMP/out" 2>&1
    if [ $? = 0 ] && [ "$(stat -c %s "$TMP/dl.bin" 2>/dev/null)" = 5000000 ] && [ ! -e "$TMP/dl.bin.part" ] \
       && grep -q "^progress: 100% 4.8 MiB of 4.8 MiB" "$TMP/out" && grep -q "^done: 4.8 MiB to " "$TMP/out"; then
      ok "examples/http_download.lua"
    else bad "examples/http_download.lua (port $port)"; fi
    # a body cut short: exit 1, the error on stderr, no file left behind
    timeout 60 "$CORIO" "$ROOT/examples/http_download.lua" "http://127.0.0.1:$port/reset" "$TMP/dl2.bin" > "$TMP/out" 2>&1
    if [ $? = 1 ] && grep -q "download failed: GET http://127.0.0.1:$port/reset: " "$TMP/out" \
       && [ ! -e "$TMP/dl2.bin" ] && [ ! -e "$TMP/dl2.bin.part" ]; then
      ok "examples/http_download.lua (a failed download leaves no file)"
    else bad "examples/http_download.lua reset (port $port)"; fi
  fi
  if [ -f "$ROOT/examples/http_upload.lua" ]; then
    head -c 3000000 /dev/urandom > "$TMP/up.bin"
    sha=$(sha256sum "$TMP/up.bin" | cut -d' ' -f1)
    timeout 60 "$CORIO" "$ROOT/examples/http_upload.lua" "http://127.0.0.1:$port/sum" "$TMP/up.bin" > "$TMP/out" 2>&1
    if [ $? = 0 ] && grep -q "^progress: 100% 2.9 MiB of 2.9 MiB" "$TMP/out" \
       && grep -q "^done: 2.9 MiB sent in .*, the server answered 200" "$TMP/out" \
       && grep -q "\"n\": 3000000, \"sha\": \"$sha\", \"method\": \"PUT\", \"chunked\": false" "$TMP/out"; then
      ok "examples/http_upload.lua"
    else bad "examples/http_upload.lua (port $port)"; fi
    # the server breaks the connection: exit 1, the error on stderr
    timeout 60 "$CORIO" "$ROOT/examples/http_upload.lua" "http://127.0.0.1:$port/reset" "$TMP/up.bin" > "$TMP/out" 2>&1
    if [ $? = 1 ] && grep -q "upload failed: PUT http://127.0.0.1:$port/reset: " "$TMP/out"; then
      ok "examples/http_upload.lua (a failed upload)"
    else bad "examples/http_upload.lua reset (port $port)"; fi
  fi
fi
echo "examples: $pass passed, $fail failed"
[ $fail = 0 ]
