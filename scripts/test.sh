#!/usr/bin/env bash
# The whole test suite: setup (install + build with warnings as errors), then every test through ctest.
#   scripts/test.sh                  all tests
#   scripts/test.sh -L unit          only one label (unit, mpi, cuda, e2e); any ctest arguments work
#   scripts/test.sh --sanitize [...] the CPU suite built with AddressSanitizer and
#                                    UndefinedBehaviorSanitizer (TMT_SANITIZE=address,undefined) in
#                                    build-sanitize/: any report ends its test as a failure. Without
#                                    ctest arguments it leaves out the 3- and 8-rank runs of the MPI
#                                    tests (their 1-, 2- and 4-rank runs stay) to keep CI short.
# Tests that need a GPU report "Not Run" on machines without one.
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
if [[ ${1:-} == --sanitize ]]; then
  args=("${@:2}")
  export TMT_BUILD_DIR=${TMT_SANITIZE_BUILD_DIR:-build-sanitize}
  export TMT_CMAKE_ARGS="-DTMT_SANITIZE=address,undefined -DTMT_CUDA=OFF ${TMT_CMAKE_ARGS:-}"
  # Any report is fatal. Leaks are not checked here: Open MPI and HDF5 keep allocations until the
  # process ends (the fuzz targets check the parsers' leaks, docs/FUZZING.md).
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:strict_string_checks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
  ((${#args[@]} > 0)) || args=(-E '_np(3|8)$')
fi
export TMT_CMAKE_ARGS="-DTMT_WERROR=ON ${TMT_CMAKE_ARGS:-}"
scripts/setup.sh
# Open MPI refuses to run as root unless told; tests start several ranks on few cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --test-dir "${TMT_BUILD_DIR:-build}" --output-on-failure -j "$(nproc)" "${args[@]}"
