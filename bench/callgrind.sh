#!/usr/bin/env bash
# Count the instructions one corio bench program executes, under callgrind,
# so that a change to the scheduler can be held to a figure.
#   bash bench/callgrind.sh w1            (or w1-spawn, or bench/w1-spawn/corio.lua)
#   BENCH_N=50000 bash bench/callgrind.sh w7
# Prints total Ir, Ir per task (per message for w6, where BENCH_M is the
# count), and the marginal Ir per task: (Ir(N) - Ir(N/2)) / (N/2), which
# cancels start-up (LuaJIT, module loading) and is the figure to compare.
# Environment: BENCH_N (default 20000, also used as BENCH_M for w6),
#   CORIO=command (default build/corio), MARGINAL=0 skips the second run,
#   KEEP=dir keeps the callgrind.out files there (for callgrind_annotate).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
CORIO="${CORIO:-$REPO/build/corio}"
N="${BENCH_N:-20000}"
MARGINAL="${MARGINAL:-1}"

(($# == 1)) || { echo "usage: $0 w1|w2|w6|w7|path/to/corio.lua" >&2; exit 2; }
case "$1" in
  *.lua) prog="$1" ;;
  *) prog="$(ls -d "$HERE/$1"*/corio.lua 2>/dev/null | head -1)" ;;
esac
[[ -n "$prog" && -f "$prog" ]] || { echo "no bench program for '$1'" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }
[[ -x "${CORIO%% *}" ]] || command -v "${CORIO%% *}" >/dev/null \
  || { echo "no corio executable: $CORIO" >&2; exit 2; }

unit=task
case "$prog" in *w6-*) unit=msg ;; esac

out_dir="${KEEP:-$(mktemp -d)}"
mkdir -p "$out_dir"
[[ -n "${KEEP:-}" ]] || trap 'rm -rf "$out_dir"' EXIT

ir_of() { # n -> prints total Ir of one run with BENCH_N=BENCH_M=n
  local n="$1" f="$out_dir/callgrind.out.$(basename "$(dirname "$prog")").$1"
  # CORIO_POLL_MS=0: poll a busy ready queue by count only, so the counts
  # do not depend on valgrind's slow clock
  CORIO_POLL_MS=0 BENCH_N="$n" BENCH_M="$n" valgrind --tool=callgrind --callgrind-out-file="$f" \
    $CORIO "$prog" >"$f.stdout" 2>"$f.stderr" \
    || { echo "run failed (BENCH_N=$n):" >&2; tail -20 "$f.stderr" >&2; exit 1; }
  grep -q '^RESULT ' "$f.stdout" || { echo "no RESULT line (BENCH_N=$n)" >&2; exit 1; }
  sed 's/^/  /' "$f.stdout" >&2
  # callgrind writes "summary: <Ir>" (older versions) or "totals: <Ir>"
  awk '/^(summary|totals):/ { print $2; exit }' "$f"
}

ir="$(ir_of "$N")"
printf '%s  %s=%d\n' "$(basename "$(dirname "$prog")")" "$([[ $unit == msg ]] && echo m || echo n)" "$N"
printf '  total Ir          %14d\n' "$ir"
printf '  Ir per %-5s      %14.0f   (start-up included)\n' "$unit" "$(awk -v a="$ir" -v n="$N" 'BEGIN { printf "%.1f", a / n }')"
if [[ "$MARGINAL" != 0 ]]; then
  half=$((N / 2))
  ir2="$(ir_of "$half")"
  printf '  total Ir at %-6d%14d\n' "$half" "$ir2"
  printf '  marginal Ir/%-5s %14.0f   ((Ir(N) - Ir(N/2)) / (N/2))\n' \
    "$unit" "$(awk -v a="$ir" -v b="$ir2" -v n=$((N - half)) 'BEGIN { printf "%.1f", (a - b) / n }')"
fi
