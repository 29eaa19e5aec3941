#!/usr/bin/env bash
# Installs what is missing, builds everything, and runs the whole test suite with CTest:
# unit tests (in-process), component tests (the runner and child processes on the host;
# some need root), integration tests on real runsc (skipped with a reason without root or
# runsc), the unit and component tests again under ASan + UBSan (the runner they start
# too), then a bounded libFuzzer run of the request and frame parsers (clang).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/install-e2b-sdks.sh  # the pinned E2B SDKs the compatibility tests run
jobs=$(nproc)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=ON
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j 1 --timeout 300

cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DBUILD_TESTING=ON -DSWISSBOX_SANITIZE=ON
cmake --build build-asan -j "$jobs" --target swissbox_unit_tests swissbox_component_tests
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -L 'unit|component' -j "$jobs" --timeout 300
CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSWISSBOX_FUZZ=ON
cmake --build build-fuzz -j "$jobs" --target swissbox_fuzz_frames swissbox_fuzz_requests
ctest --test-dir build-fuzz --output-on-failure -L fuzz -j "$jobs"
echo "test.sh: all tests passed"
