#!/usr/bin/env bash
# CPU training speed: ms per optimizer step, tokens/s and achieved GFLOP/s (model FLOPs: 6 x active
# matmul parameters + attention, see trainer/model/model_stats.h) for recipes/tiny.yaml and
# recipes/bench-cpu.yaml on one rank.
#   scripts/bench/cpu_step.sh [STEPS]     (default 20; the first 3 steps are warm-up and not counted)
# TMT_BUILD_DIRS="build /other/build" times several builds side by side, row by row in turn (for
# comparing a change with the build before it on the same machine in the same run).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh >&2
builds=${TMT_BUILD_DIRS:-${TMT_BUILD_DIR:-build}}
steps=${1:-20}
warmup=3

printf '%-22s %-20s %10s %12s %10s %12s %10s\n' recipe build params tokens/step ms/step tokens/s GFLOP/s
for recipe in recipes/tiny.yaml recipes/bench-cpu.yaml; do
for build in $builds; do
  bin=$build/tramontane
  dir=$(mktemp -d)
  # one rank, whatever layout the recipe has (tiny's own is tp2 pp2 ep2 on 4 ranks)
  one_rank=(--set parallel.tp=1 --set parallel.pp=1 --set parallel.ep=1 --set parallel.etp=1)
  "$bin" train "$recipe" "${one_rank[@]}" --set train.steps="$steps" --set run.dir="$dir" \
    --set log.eval_every=0 --set log.every=1000 >"$dir/train.log"
  info=$("$bin" check "$recipe" "${one_rank[@]}" --json)
  field() { sed -n "s/.*\"$1\": *\([0-9.e+]*\).*/\1/p" <<<"$info"; }
  # mean step time over the steps after warm-up
  ms=$(awk -v w="$warmup" -F'"step_time_s":' 'NR > w { split($2, a, /[,}]/); s += a[1]; n++ }
       END { printf "%.1f", 1000 * s / n }' "$dir/metrics.jsonl")
  awk -v r="$recipe" -v b="$build" -v p="$(field total_params)" -v t="$(field tokens_per_step)" \
      -v ms="$ms" -v f="$(field flops_per_token)" 'BEGIN { tps = t / (ms / 1000);
      printf "%-22s %-20s %9.2fM %12d %10.1f %12.0f %10.2f\n", r, b, p / 1e6, t, ms, tps, tps * f / 1e9 }'
  rm -rf "$dir"
done
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
