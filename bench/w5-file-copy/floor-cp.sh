#!/usr/bin/env bash
# W5 file-copy floor: cp of the 256 MiB W5 input (timed inside, around cp only).
set -euo pipefail
SRC="${BENCH_IN:-/tmp/corio-bench/lines.txt}"
DST=/tmp/corio-bench/out-floor-cp.txt
rm -f "$DST"
t0=$(date +%s.%N)
cp "$SRC" "$DST"
t1=$(date +%s.%N)
n=$(stat -c %s "$SRC"); size=$(stat -c %s "$DST")
ok=0; cmp -s <(head -c 4096 "$SRC") <(head -c 4096 "$DST") && cmp -s <(tail -c 4096 "$SRC") <(tail -c 4096 "$DST") && ok=1
rm -f "$DST"
[[ "$size" == "$n" && $ok == 1 ]] || { echo "FAIL size=$size expected=$n" >&2; exit 1; }
awk -v n="$n" -v t0="$t0" -v t1="$t1" 'BEGIN { dt = t1 - t0; printf "RESULT w5-file-copy floor-cp mib_per_s=%.1f wall_s=%.4f bytes=%d\n", n / 1048576 / dt, dt, n }'
