#!/usr/bin/env bash
# The whole test suite: setup (install + build with warnings as errors), then every test through ctest.
#   scripts/test.sh                  all tests
#   scripts/test.sh -L unit          only one label (unit, mpi, cuda, e2e); any ctest arguments work
# Tests that need a GPU report "Not Run" on machines without one.
set -euo pipefail
cd "$(dirname "$0")/.."
export TMT_CMAKE_ARGS="-DTMT_WERROR=ON ${TMT_CMAKE_ARGS:-}"
scripts/setup.sh
# Open MPI refuses to run as root unless told; tests start several ranks on few cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ctest --test-dir "${TMT_BUILD_DIR:-build}" --output-on-failure -j "$(nproc)" "$@"
