#!/usr/bin/env bash
# Training speed of recipes/tiny.yaml at several parallel layouts (tensor, pipeline, expert, data)
# on this machine (CPU, MPI, one OpenMP thread per rank when ranks >= cores). Mean over the steps
# after warm-up. Every run starts from the one-rank layout (tp = pp = ep = 1) and sets its own.
#   scripts/bench/parallel_step.sh [STEPS]       (default 30; first 5 not counted)
# TMT_BUILD_DIRS="build /other/build" times several builds side by side, row by row in turn.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh >&2
builds=${TMT_BUILD_DIRS:-${TMT_BUILD_DIR:-build}}
steps=${1:-30}
warmup=5
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cores=$(nproc)

printf '%-6s %-44s %-20s %10s %12s\n' ranks layout build ms/step tokens/s
run() {  # ranks, then --set flags: one row per build
  local build
  for build in $builds; do run_one "$build" "$@"; done
}
run_one() {  # build, ranks, then --set flags
  local bin=$1/tramontane build=$1
  shift
  local n=$1
  shift
  local dir
  dir=$(mktemp -d)
  local threads=$((cores / n > 0 ? cores / n : 1))
  mpirun -n "$n" --oversubscribe --bind-to none -x OMP_NUM_THREADS="$threads" "$bin" train recipes/tiny.yaml \
    --set train.steps="$steps" --set run.dir="$dir" --set log.eval_every=0 --set log.every=1000 \
    --set parallel.tp=1 --set parallel.pp=1 --set parallel.ep=1 "$@" >/dev/null
  local ms
  ms=$(awk -v w="$warmup" -F'"step_time_s":' 'NR > w { split($2, a, /[,}]/); s += a[1]; n++ }
       END { printf "%.1f", 1000 * s / n }' "$dir/metrics.jsonl")
  local layout
  layout=$(sed -e 's/--set //g' -e 's/parallel\.//g' -e 's/train\.//g' -e 's/=//g' <<<"$*")
  awk -v n="$n" -v l="${layout:-dp$n}" -v b="$build" -v ms="$ms" 'BEGIN { printf "%-6d %-44s %-20s %10.1f %12.0f\n", n, l, b, ms, 2048 / (ms / 1000) }'
  rm -rf "$dir"
}
run 1
run 2
run 2 --set parallel.ep=2
run 2 --set parallel.tp=2
run 2 --set parallel.pp=2
run 2 --set parallel.tp=2 --set parallel.etp=2
run 4 --set parallel.ep=4
run 4 --set parallel.ep=2 --set parallel.zero1=true
run 4 --set parallel.tp=2 --set parallel.pp=2 --set parallel.ep=2
run 4 --set parallel.pp=4
run 8 --set train.micro_batch=2 --set parallel.ep=4
run 8 --set train.micro_batch=2 --set parallel.tp=2 --set parallel.pp=2 --set parallel.ep=4 --set parallel.zero1=true
echo "machine: $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); 2048 tokens/step"
