#!/usr/bin/env bash
# Build corio twice (normal, and with AddressSanitizer + UBSan) and run the
# whole CTest suite on each. Exits non-zero on any failure, sanitizer
# report or leak.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}

echo "== build (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$JOBS"
echo "== test"
# Spec tests time out after 5 s by default (a hang fails, not stalls, CI);
# 30 s keeps that while a shared, loaded machine runs them slowly.
(cd build && CORIO_TEST_TIMEOUT=${CORIO_TEST_TIMEOUT:-30} ctest --output-on-failure -j"$JOBS")

echo "== build (CORIO_SANITIZE=ON)"
# This build links the corio executable to the shared LuaJIT (the fallback
# when libluajit-5.1.a is missing), so that the suite covers both ways.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCORIO_SANITIZE=ON \
  -DCORIO_LUAJIT_STATIC=OFF >/dev/null
cmake --build build-asan -j"$JOBS"
echo "== test under AddressSanitizer + UBSan (leaks fail), GC stressed"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export CORIO_GC_STRESS=1
# Sanitizers and a GC collecting all the time make code ~10x slower: give
# each spec test more time than the default 5 s.
export CORIO_TEST_TIMEOUT=60
(cd build-asan && ctest --output-on-failure -j"$JOBS")
