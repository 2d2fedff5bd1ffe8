#!/usr/bin/env bash
# CPU training speed: ms per optimizer step, tokens/s and achieved GFLOP/s (model FLOPs: 6 x active
# matmul parameters + attention, see trainer/model_stats.h) for recipes/tiny.yaml and
# recipes/bench-cpu.yaml on one rank.
#   scripts/bench/cpu_step.sh [STEPS]     (default 20; the first 3 steps are warm-up and not counted)
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh >&2
bin=${TMT_BUILD_DIR:-build}/tramontane
steps=${1:-20}
warmup=3

printf '%-22s %10s %12s %10s %12s %10s\n' recipe params tokens/step ms/step tokens/s GFLOP/s
for recipe in recipes/tiny.yaml recipes/bench-cpu.yaml; do
  dir=$(mktemp -d)
  "$bin" train "$recipe" --set train.steps="$steps" --set run.dir="$dir" --set log.eval_every=0 \
    --set log.every=1000 >"$dir/train.log"
  info=$("$bin" check "$recipe" --json)
  field() { sed -n "s/.*\"$1\": *\([0-9.e+]*\).*/\1/p" <<<"$info"; }
  # mean step time over the steps after warm-up
  ms=$(awk -v w="$warmup" -F'"step_time_s":' 'NR > w { split($2, a, /[,}]/); s += a[1]; n++ }
       END { printf "%.1f", 1000 * s / n }' "$dir/metrics.jsonl")
  awk -v r="$recipe" -v p="$(field total_params)" -v t="$(field tokens_per_step)" -v ms="$ms" \
      -v f="$(field flops_per_token)" 'BEGIN { tps = t / (ms / 1000);
      printf "%-22s %9.2fM %12d %10.1f %12.0f %10.2f\n", r, p / 1e6, t, ms, tps, tps * f / 1e9 }'
  rm -rf "$dir"
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
