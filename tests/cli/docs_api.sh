#!/usr/bin/env bash
# docs_api.sh: every public name of corio's Lua modules, object methods and
# runtime/corio.h is documented in docs/api.md or docs/c-api.md (the
# checker is tests/docs/check_api_docs.lua).
# Usage: docs_api.sh [path/to/corio]   (without it: a stock luajit)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
if [ $# -ge 1 ] && [ -n "$1" ]; then
  exec "$1" tests/docs/check_api_docs.lua
fi
LUA_PATH="${CORIO_LUA_PATH:+$CORIO_LUA_PATH;}$REPO/lua/?.lua;$REPO/lua/?/init.lua;;" \
LUA_CPATH="${CORIO_LUA_CPATH:+$CORIO_LUA_CPATH;}$REPO/build/lib/lua/5.1/?.so;;" \
  exec "${LUAJIT:-luajit}" tests/docs/check_api_docs.lua
