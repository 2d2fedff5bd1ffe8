#!/usr/bin/env bash
# One MoE layer's dispatch (plan, permute, count exchange, all-to-all-v, expert-major reorder) and
# combine (reorder back, all-to-all-v, weighted unpermute) on the CPU over MPI, at 1, 2, 4 and 8 ranks.
# Each rank routes T tokens of width D to top-2 of 8 experts, uniformly at random; times are per layer
# call, averaged over 20 after 2 warm-ups; MB/s is each rank's dispatched bytes over the dispatch time.
#   scripts/bench/moe_dispatch.sh [T] [D]       (default 2048 tokens of width 1024)
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh >&2
bin=${TMT_BUILD_DIR:-build}/tests/bench_moe_dispatch
t=${1:-2048}
d=${2:-1024}
cores=$(nproc)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
printf '%5s %7s %5s %4s %2s %12s %12s %12s\n' ranks tokens D E K dispatch_ms combine_ms MB/s
for n in 1 2 4 8; do
  mpirun -n "$n" --oversubscribe --bind-to none "$bin" "$t" "$d" 8 2
done
echo "machine: $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); ranks share the cores"
