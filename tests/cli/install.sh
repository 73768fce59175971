#!/usr/bin/env bash
# SPEC §0: `cmake --install` lays out bin/corio, lib/libcorio.*,
# include/corio.h, the Lua modules and the C module, so that the installed
# corio runs scripts and a stock luajit with LUA_PATH/LUA_CPATH set can
# require "corio"; pkg-config finds libcorio and a C program builds with it.
set -u
CORIO=${1:-build/corio}
BUILD=$(cd "$(dirname "$CORIO")" && pwd)
P=$(mktemp -d)
trap 'rm -rf "$P"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; [ -f "$P/log" ] && sed 's/^/    /' "$P/log" | tail -20; }

cmake --install "$BUILD" --prefix "$P/prefix" > "$P/log" 2>&1 || { bad "cmake --install"; echo "install: $pass passed, $fail failed"; exit 1; }
for f in bin/corio lib/libcorio.a lib/libcorio.so include/corio.h \
         share/lua/5.1/corio/init.lua share/lua/5.1/corio/gather.lua \
         lib/lua/5.1/corio/core.so lib/pkgconfig/corio.pc; do
  [ -e "$P/prefix/$f" ] || { echo "missing $f" > "$P/log"; bad "layout has $f"; continue; }
done
[ $fail = 0 ] && ok "the install layout of SPEC §0"

cat > "$P/s.lua" <<'LUA'
local corio = require "corio"
local r = corio.gather({ function() corio.sleep(0.01) return 1 end, function() return 2 end })
print("sum " .. (r[1] + r[2]))
LUA
# run from elsewhere, so nothing of the source or build tree is used
(cd / && "$P/prefix/bin/corio" "$P/s.lua") > "$P/log" 2>&1
if grep -q "sum 3" "$P/log"; then ok "the installed corio runs a script"; else bad "the installed corio runs a script"; fi

(cd / && LUA_PATH="$P/prefix/share/lua/5.1/?.lua;$P/prefix/share/lua/5.1/?/init.lua;;" \
  LUA_CPATH="$P/prefix/lib/lua/5.1/?.so;;" ${LUAJIT:-luajit} "$P/s.lua") > "$P/log" 2>&1
if grep -q "sum 3" "$P/log"; then ok "a stock luajit requires the installed corio"; else bad "a stock luajit requires the installed corio"; fi

cat > "$P/host.c" <<'C'
#include <corio.h>
#include <stdio.h>
int main(void) {
  corio_rt *rt = corio_new(NULL);
  int r = corio_run_string(rt, "require('corio').sleep(0.001) print('embedded ok')", "=h");
  if (r != 0) fprintf(stderr, "%s\n", corio_errmsg(rt));
  corio_free(rt);
  return r != 0;
}
C
# a sanitized libcorio needs a sanitized host program
SAN=""
[ "${CORIO_SANITIZE:-0}" = 1 ] && SAN="-fsanitize=address,undefined"
if PKG_CONFIG_PATH="$P/prefix/lib/pkgconfig" cc $SAN -o "$P/host" "$P/host.c" \
     $(PKG_CONFIG_PATH="$P/prefix/lib/pkgconfig" pkg-config --cflags --libs corio) > "$P/log" 2>&1 \
   && (cd / && LD_LIBRARY_PATH="$P/prefix/lib" LUA_PATH="$P/prefix/share/lua/5.1/?.lua;$P/prefix/share/lua/5.1/?/init.lua;;" "$P/host") > "$P/log" 2>&1 \
   && grep -q "embedded ok" "$P/log"; then
  ok "a C host builds with pkg-config corio and runs"
else bad "a C host builds with pkg-config corio and runs"; fi

echo "install: $pass passed, $fail failed"
[ $fail = 0 ]
