#!/usr/bin/env bash
# Every CUDA kernel timed at one Mixtral-shaped layer's shapes (T = 4096 tokens, D = 2048, 16/4
# heads of 128, 8 experts top-2 of FFN 5632, vocab 32000), bf16 where the op takes it, attention
# also at Mixtral 8x7B's 32/8 heads, through cuDNN and our flash kernels side by side: a table of
# time, achieved rate, floor and % of the floor (tests/tools/bench_cuda_kernels.cpp says how each
# is counted). The expert GEMMs also pass by pass through each grouped-GEMM path (CUTLASS in its three
# tile configurations, cuBLAS grouped, the cuBLASLt loop), at these shapes and Mixtral 8x7B's; the
# "experts w13/w2" rows take the path TMT_GROUPED_GEMM and TMT_GROUPED_GEMM_TILE choose
# (kernels/grouped_linear.h). Builds build-gpu with the CUDA backend if the program is missing or
# stale; exits 77 (skipped) on a machine without a GPU.
#   scripts/bench/cuda_kernels.sh
# Environment: TMT_BUILD_DIR (default build-gpu), TMT_CUDA_ARCHS (default 90a), TMT_JOBS.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${TMT_BUILD_DIR:-build-gpu}
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DTMT_CUDA=ON \
    -DTMT_CUDA_ARCHS="${TMT_CUDA_ARCHS:-90a}" -DTMT_WERROR=ON >&2
fi
cmake --build "$build" -j "${TMT_JOBS:-$(nproc)}" --target bench_cuda_kernels >&2
exec "$build/tests/bench_cuda_kernels"
