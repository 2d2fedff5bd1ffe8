#!/usr/bin/env bash
# The training-step benchmark (tests/tools/bench_train.cpp): tokens/s, model TFLOP/s, MFU, peak
# memory, then one step's per-op table (time, achieved rate, floor, % of the floor, and the time
# outside ops) — by default for recipes/bench-1gpu.yaml on one GPU. Builds the program if it is
# missing or stale and passes every argument through; exits 77 (skipped) when the recipe's
# train.device is cuda and no GPU is usable. One process: for a layout of several ranks, run
# build/tests/bench_train under mpirun.
#   scripts/bench/train_step.sh [RECIPE] [--set key=value]... [--steps N] [--warmup N]
#                               [--peak-tflops X] [--hbm-gbps X]
#   scripts/bench/train_step.sh recipes/tiny.yaml --set parallel.tp=1 --set parallel.pp=1 \
#     --set parallel.ep=1 --steps 3 --warmup 1                  # on the CPU, one rank
# Environment: TMT_BUILD_DIR (default build), TMT_JOBS; TMT_CUDA_ARCHS (default 90a) when it has
# to configure.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${TMT_BUILD_DIR:-build}
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DTMT_CUDA_ARCHS="${TMT_CUDA_ARCHS:-90a}" \
    -DTMT_WERROR=ON >&2
fi
cmake --build "$build" -j "${TMT_JOBS:-$(nproc)}" --target bench_train >&2
exec "$build/tests/bench_train" "$@"
