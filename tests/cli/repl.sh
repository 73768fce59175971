#!/usr/bin/env bash
# The REPL through a pseudo-terminal (tests/cli/repl.py).
exec python3 "$(dirname "$0")/repl.py" "${1:-build/corio}"
