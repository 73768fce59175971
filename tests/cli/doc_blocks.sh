#!/usr/bin/env bash
# doc_blocks.sh: the ```lua blocks of README.md and docs/*.md marked
# `<!-- run ... -->` run with the corio binary, and what they print matches
# their `--> ...` comments and documented output (the checker and the
# marker syntax: tests/docs/run_doc_blocks.lua). No network is needed.
# Usage: doc_blocks.sh path/to/corio   (or set CORIO)
set -euo pipefail
CORIO="${1:-${CORIO:-}}"
if [ -z "$CORIO" ] || [ ! -x "$CORIO" ]; then
  echo "usage: $0 path/to/corio   (or set CORIO); got '$CORIO'" >&2
  exit 2
fi
CORIO="$(cd "$(dirname "$CORIO")" && pwd)/$(basename "$CORIO")"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
exec "$CORIO" tests/docs/run_doc_blocks.lua "$CORIO" "$REPO"
