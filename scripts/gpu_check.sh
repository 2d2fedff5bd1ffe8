#!/usr/bin/env bash
# One command for a machine with a GPU: build with the CUDA backend, run every test labelled `cuda`
# (and the CPU suite's unit tests as a sanity check), and print a summary table last. Without a GPU
# the cuda tests report "Not Run" (skipped), which this script shows rather than hides. Then the
# CUDA kernel benchmark (scripts/bench/cuda_kernels.sh) and the training-step benchmark of
# recipes/bench-1gpu.yaml (scripts/bench/train_step.sh: tokens/s, MFU, memory, per-op table; it
# exits 77, "skipped", without a GPU). Logs go to $OUT
# when that variable is set (the lent-GPU workflow), else to build-gpu/logs.
#   scripts/gpu_check.sh
# Environment: TMT_CUDA_ARCHS (default 90a, Hopper), TMT_JOBS.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build-gpu/logs}
mkdir -p "$out"
jobs=${TMT_JOBS:-$(nproc)}

step() {  # name, command...: runs it, logs it, records pass/fail (exit 77: skipped, no GPU)
  local name=$1
  shift
  local start=$SECONDS rc=0
  "$@" >"$out/$name.log" 2>&1 || rc=$?
  if ((rc == 0)); then
    results+=("$(printf '%-14s %-6s %5ds' "$name" ok $((SECONDS - start)))")
  elif ((rc == 77)); then
    results+=("$(printf '%-14s %-6s %5ds  (see %s)' "$name" skipped $((SECONDS - start)) "$out/$name.log")")
  else
    results+=("$(printf '%-14s %-6s %5ds  (see %s)' "$name" FAILED $((SECONDS - start)) "$out/$name.log")")
    failed=1
    return 1
  fi
}
results=()
failed=0

nvidia-smi >"$out/nvidia-smi.log" 2>&1 || true
gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -n 1)
gpu=${gpu:-no GPU found}
configure() {
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DTMT_CUDA=ON \
    -DTMT_CUDA_ARCHS="${TMT_CUDA_ARCHS:-90a}" -DTMT_WERROR=ON
}
# GPU machines usually have every library already (and often no network or apt): configure first,
# and install dependencies only when that fails.
if ! step configure configure; then
  failed=0  # the retry after installing decides
  step setup scripts/setup.sh --deps-only
  step reconfigure configure
fi
step build cmake --build build-gpu -j "$jobs"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# -V: the cuda tests print the error they measured even when they pass; the log keeps it.
step cuda-tests ctest --test-dir build-gpu -L cuda -V
step unit-tests ctest --test-dir build-gpu -L unit -j "$jobs" --output-on-failure
# The kernel benchmark's table (time, rate, floor per op) lands in $out/kernel-bench.log.
step kernel-bench env TMT_BUILD_DIR=build-gpu TMT_JOBS="$jobs" scripts/bench/cuda_kernels.sh
# The training-step benchmark: a few steps of recipes/bench-1gpu.yaml (kept short so that the
# whole check fits in 10 minutes); its summary and per-op tables land in $out/train-step.log.
# The floors take the card's own HBM bandwidth (the H200's 4.8 TB/s; the bench's default is the H100's).
hbm=()
[[ $gpu == *H200* ]] && hbm=(--hbm-gbps 4800)
step train-step env TMT_BUILD_DIR=build-gpu TMT_JOBS="$jobs" scripts/bench/train_step.sh \
  recipes/bench-1gpu.yaml --warmup 3 --steps 10 "${hbm[@]}"
# The PyTorch reference of recipes/bench-1gpu.yaml's model (tokens/s, MFU), when python3 has torch.
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  step torch-moe env PYTHONUNBUFFERED=1 python3 scripts/bench/torch_moe.py --steps 10 --warmup 3
fi

echo
grep -E '^(\||[A-Z].*SMs)' "$out/kernel-bench.log" 2>/dev/null
grep -E '^(torch|step|[0-9.]+B parameters)' "$out/torch-moe.log" 2>/dev/null | sed 's/^/torch reference: /'
grep -E '^(device:|\| (tokens/step|step time|tokens/s|model TFLOP/s|MFU|peak memory|loss|all ops|outside ops|step \(wall\)) )' \
  "$out/train-step.log" 2>/dev/null | sed 's/^/train step: /'
echo
echo "gpu_check summary ($(date -u +%Y-%m-%dT%H:%MZ), $gpu)"
grep -E "Test +#[0-9]+: |tests passed" "$out/cuda-tests.log" 2>/dev/null | sed 's/^/  cuda: /'
printf '%s\n' "${results[@]}"
exit $failed
