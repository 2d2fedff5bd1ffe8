#!/usr/bin/env bash
# The bubble of 1F1B and interleaved 1F1B measured on the CPU: PP ranks run one step's passes in
# the trainer's order (trainer/pipeline/schedule.h) with its messaging over MPI, each pass's
# compute a sleep (a stage's forward FORWARD_MS, its backward twice that; a chunk's 1/vpp), so
# the cores being few does not matter. bubble = (step - ideal) / ideal, ideal = m · 3 · FORWARD_MS;
# theory = (pp-1)/(vpp·m); ms/pass = what the step took beyond ideal · (1 + theory), per pass of a
# rank (2·vpp·m passes): messaging and wake-up overhead. Best of 3 steps per row.
#   scripts/bench/pipeline_bubble.sh [FORWARD_MS]     (default 40)
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh >&2
bin=${TMT_BUILD_DIR:-build}/tests/bench_pipeline_bubble
fwd=${1:-40}
cores=$(nproc)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
printf '%3s %4s %4s %10s %10s %9s %9s %8s %9s\n' pp vpp m step_ms ideal_ms bubble theory diff \
  ms/pass
# The first row has no pipeline: what it measures beyond the ideal is the floor (sleep overshoot).
for row in "1 1 16" "2 1 4" "2 2 4" "2 4 4" "4 1 8" "4 2 8" "4 4 8" "4 1 16" "4 2 16" "8 1 16" "8 2 16"; do
  read -r pp vpp m <<<"$row"
  # Waiting ranks yield the core (with as many ranks as cores Open MPI would spin, and a rank
  # waking from its sleep would wait for a core behind anything else running: 1-2 ms a pass).
  mpirun -n "$pp" --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 "$bin" "$vpp" "$m" \
    "$fwd" 3
done
echo "machine: $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); each pass sleeps, the ranks share the cores"
