#!/usr/bin/env bash
# Run corio's bench programs (bench/<workload>/corio.lua) beside every peer of
# the shared harness, in one run, so the figures are comparable.
#   bash bench/run.sh                  w1 w2 w6 w7, every peer plus corio
#   bash bench/run.sh w6 w1-spawn/corio   only ids starting with these prefixes
# Environment: RUNS, TIMEOUT as for the shared run.sh; OUT=path of the .md
#   report (default bench/results/corio-<date>[-partial].md in this repo);
#   CORIO_SHARED=dir of the shared harness (the dir holding run.sh, or its
#   parent holding bench/run.sh; default ../shared/bench from the repo root);
#   CORIO=command that runs the .lua programs (default build/corio).
# This script only calls the shared run.sh; it does not install anything.
# Run `bash <shared>/bench/setup.sh` once first to install the peers'
# packages and the bench data.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"

if [[ -n "${CORIO_SHARED:-}" ]]; then
  if [[ -f "$CORIO_SHARED/run.sh" ]]; then SB="$CORIO_SHARED"
  else SB="$CORIO_SHARED/bench"; fi
else
  SB="$REPO/../shared/bench"
fi
[[ -f "$SB/run.sh" ]] || { echo "no shared harness at $SB (set CORIO_SHARED)" >&2; exit 2; }
SB="$(cd "$SB" && pwd)"

CORIO="${CORIO:-$REPO/build/corio}"
[[ -x "${CORIO%% *}" ]] || command -v "${CORIO%% *}" >/dev/null \
  || { echo "no corio executable: $CORIO (build it first, or set CORIO)" >&2; exit 2; }

(($#)) || set -- w1 w2 w6 w7
mkdir -p "$HERE/results"
if (($# == 4)) && [[ "$*" == "w1 w2 w6 w7" ]]; then
  OUT="${OUT:-$HERE/results/corio-$(date +%Y-%m-%d).md}"
else
  OUT="${OUT:-$HERE/results/corio-$(date +%Y-%m-%d)-partial.md}"
fi

# The shared run.sh writes its raw TSV and logs under its own results/ dir
# (and setup.sh builds into its build/). When that tree is not writable, run
# a private copy of it from bench/results/harness instead.
probe="$SB/results/.corio-probe.$$"
if mkdir -p "$SB/results" 2>/dev/null && : >"$probe" 2>/dev/null; then
  rm -f "$probe"
  HARNESS="$SB"
else
  HARNESS="$HERE/results/harness"
  echo "$SB is not writable: running a copy in $HARNESS" >&2
  rm -rf "$HARNESS" && mkdir -p "$HARNESS" && cp -a "$SB/." "$HARNESS/" \
    && chmod -R u+w "$HARNESS" || { echo "cannot copy $SB" >&2; exit 1; }
fi

log="$HERE/results/run-$(date +%Y%m%d-%H%M%S).log"
EXTRA="$HERE" EXTRA_LUA="$CORIO" OUT="$OUT" \
  bash "$HARNESS/run.sh" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

# Keep a copy of the raw TSV beside the report, so the repo's results are
# self-contained.
raw="$(sed -n 's/^raw: //p' "$log" | tail -1)"
[[ -n "$raw" && -f "$raw" ]] && cp "$raw" "$HERE/results/"
exit "$rc"
