#!/usr/bin/env bash
# corio.thread_pool_size sizes libuv's pool before its first use and
# refuses, naming the size in force, once the pool runs; a bad size is a
# bad argument. (The speedup of two workers is measured in
# bench/t2-to-thread-cpu, not here.)
set -u
CORIO=${1:-build/corio}
out=$("$CORIO" -e '
local corio = require "corio"
print(pcall(corio.thread_pool_size, 0))
corio.thread_pool_size(2)
print(corio.to_thread(function(a, b) return a + b end, 2, 3))
print(pcall(corio.thread_pool_size, 3))' 2>&1)
pass=0 fail=0
check() { if echo "$out" | grep -q "$2"; then pass=$((pass+1)); echo "ok - $1"; else fail=$((fail+1)); echo "FAIL - $1"; echo "$out" | sed 's/^/    /'; fi; }
check "a bad size is a bad argument" "bad argument #1 to 'thread_pool_size'"
check "after first use it refuses, naming the size in force" "already runs (with 2 threads)"
check "to_thread works with the pool it sized" "^5$"
out=$("$CORIO" -e '
local corio = require "corio"
require("corio.fs").exists("/")
print(pcall(corio.thread_pool_size, 3))' 2>&1)
check "file I/O starts the pool too" "already runs"
echo "pool: $pass passed, $fail failed"
[ $fail = 0 ]
