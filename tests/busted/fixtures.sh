#!/bin/bash
# tests/busted/fixtures.sh: CTest entry for tests/busted/driver.lua, which
# runs `corio test` on the failing fixtures and checks status and output.
# $1: the corio executable (default build/corio). The driver runs under
# plain luajit when there is one, so a broken runtime cannot hide its own
# failure; otherwise under corio itself.
set -u
here=$(cd "$(dirname "$0")" && pwd)
corio=${1:-$here/../../build/corio}
# Plain luajit on purpose: $LUAJIT may preload the sanitizer runtimes,
# which the corio processes the driver starts must not inherit.
if command -v luajit >/dev/null 2>&1; then
  exec luajit "$here/driver.lua" "$corio"
fi
exec "$corio" "$here/driver.lua" "$corio"
