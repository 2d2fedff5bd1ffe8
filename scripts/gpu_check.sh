#!/usr/bin/env bash
# One command for a machine with a GPU: every test labelled `cuda`, the CUDA kernel benchmark
# (tests/tools/bench_cuda_kernels: time, rate, floor per op), the training-step benchmark of
# recipes/bench-1gpu.yaml (tests/tools/bench_train: tokens/s, MFU, memory, per-op table), in bf16
# and again with FP8 GEMMs (train.precision fp8), and, when
# python3 has torch, scripts/bench/torch_moe.py on the same GPU; a summary table last. Without a GPU
# the cuda tests report "Not Run" (skipped), which this script shows rather than hides. Logs go to
# $OUT when that variable is set (the lent-GPU workflow), else to build-gpu/logs.
#
# Two ways to get the programs:
# - build-gpu-bundle.tar.xz in the repository root (scripts/gpu_bundle.sh, made on a development
#   machine): for a lent machine that has CUDA and PyTorch but none of tramontane's dependencies;
#   nothing is compiled there. Carry it: run(command="scripts/gpu_check.sh",
#   carry=["build-gpu-bundle.tar.xz"]).
# - otherwise configure and build build-gpu/ here (a machine with the dependencies), and also run
#   the unit tests.
#   scripts/gpu_check.sh
# Environment: TMT_CUDA_ARCHS (default 90a, Hopper), TMT_JOBS; TMT_ATTENTION, TMT_GROUPED_GEMM and
# TMT_GROUPED_GEMM_TILE choose kernel paths (kernels/attention.h, kernels/grouped_linear.h).
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
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
hbm=()
[[ $gpu == *H200* ]] && hbm=(--hbm-gbps 4800)

if [[ -f build-gpu-bundle.tar.xz ]]; then
  # The lent machine's image: programs built elsewhere (scripts/gpu_bundle.sh), the CUDA libraries
  # from its own pip wheels, Open MPI relocated into the bundle.
  bundle=/tmp/tmt-bundle
  rm -rf "$bundle" && mkdir -p "$bundle" && tar -C "$bundle" -xJf build-gpu-bundle.tar.xz
  nvidia_libs=$(python3 -c 'import glob, os, site
dirs = [d for s in site.getsitepackages() for d in glob.glob(os.path.join(s, "nvidia", "*", "lib"))]
print(":".join(sorted(set(dirs))))' 2>/dev/null || true)
  ompi_lib=$(cd "$bundle/ompi" && find . -name libmpi.so -printf '%h\n' | head -n 1)
  export OPAL_PREFIX=$bundle/ompi PATH=$bundle/ompi/bin:$PATH
  export LD_LIBRARY_PATH=$bundle/lib:$bundle/ompi/${ompi_lib#./}:${nvidia_libs}:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
  # One node, no ssh: singletons without a daemon, mpirun launching locally, shared memory only.
  export OMPI_MCA_ess_singleton_isolated=1 OMPI_MCA_plm=isolated OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1
  bin=$bundle/bin
  ldd "$bin/bench_train" >"$out/ldd.log" 2>&1 || true
  # Every cuda test as ctest would run it (rank counts, environment), from the bundle's list.
  cuda_tests() {
    python3 - "$bundle/cuda-tests.json" "$bin" "$out" <<'PY'
import json, os, subprocess, sys
tests, bin_dir, out = json.load(open(sys.argv[1]))["tests"], sys.argv[2], sys.argv[3]
codes = []
for t in tests:
    cmd = list(t["command"])
    cmd = ["mpirun" if c.endswith(("mpiexec", "mpirun")) else c for c in cmd]
    cmd = [os.path.join(bin_dir, os.path.basename(c)) if "/tests/" in c or c.endswith("/tramontane") else c for c in cmd]
    env = dict(os.environ)
    for p in t.get("properties", []):
        if p["name"] == "ENVIRONMENT":
            env.update(v.split("=", 1) for v in p["value"])
    with open(os.path.join(out, t["name"] + ".log"), "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=600)
    word = {0: "Passed", 77: "Not Run"}.get(rc, "FAILED (exit %d)" % rc)
    codes.append(rc)
    print("Test %s: %s" % (t["name"], word), flush=True)
failed = sum(c not in (0, 77) for c in codes)
print("cuda tests: %d passed, %d not run, %d failed" % (codes.count(0), codes.count(77), failed))
# As ctest: a failure fails; all Not Run (no GPU) is "skipped".
sys.exit(1 if failed else 77 if codes and all(c == 77 for c in codes) else 0)
PY
  }
  step cuda-tests cuda_tests
  step kernel-bench "$bin/bench_cuda_kernels"
  step train-step "$bin/bench_train" recipes/bench-1gpu.yaml --warmup 3 --steps 10 "${hbm[@]}"
  # The same steps with FP8 GEMMs (blockwise, kernels/cuda/fp8_linear.h); MFU against bf16's peak.
  step train-step-fp8 "$bin/bench_train" recipes/bench-1gpu.yaml --set train.precision=fp8 \
    --warmup 3 --steps 10 "${hbm[@]}"
else
  configure() {
    cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DTMT_CUDA=ON \
      -DTMT_CUDA_ARCHS="${TMT_CUDA_ARCHS:-90a}" -DTMT_WERROR=ON
  }
  # A machine with tramontane's dependencies (and often no network or apt): configure first, and
  # install dependencies only when that fails.
  if ! step configure configure; then
    failed=0  # the retry after installing decides
    step setup scripts/setup.sh --deps-only
    step reconfigure configure
  fi
  step build cmake --build build-gpu -j "$jobs"
  # -V: the cuda tests print the error they measured even when they pass; the log keeps it.
  step cuda-tests ctest --test-dir build-gpu -L cuda -V
  step unit-tests ctest --test-dir build-gpu -L unit -j "$jobs" --output-on-failure
  # The kernel benchmark's table (time, rate, floor per op) lands in $out/kernel-bench.log.
  step kernel-bench env TMT_BUILD_DIR=build-gpu TMT_JOBS="$jobs" scripts/bench/cuda_kernels.sh
  # A few steps of recipes/bench-1gpu.yaml (short, so that the whole check fits in 10 minutes);
  # the summary and per-op tables land in $out/train-step.log; the floors take the card's own HBM
  # bandwidth (the H200's 4.8 TB/s; the bench's default is the H100's).
  step train-step env TMT_BUILD_DIR=build-gpu TMT_JOBS="$jobs" scripts/bench/train_step.sh \
    recipes/bench-1gpu.yaml --warmup 3 --steps 10 "${hbm[@]}"
  step train-step-fp8 env TMT_BUILD_DIR=build-gpu TMT_JOBS="$jobs" scripts/bench/train_step.sh \
    recipes/bench-1gpu.yaml --set train.precision=fp8 --warmup 3 --steps 10 "${hbm[@]}"
fi
# The PyTorch reference of recipes/bench-1gpu.yaml's model (tokens/s, MFU), when python3 has torch.
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
  step torch-moe env PYTHONUNBUFFERED=1 python3 scripts/bench/torch_moe.py --steps 10 --warmup 3
fi

echo
grep -E '^(\||[A-Z].*SMs)' "$out/kernel-bench.log" 2>/dev/null
grep -E '^(torch|step|[0-9.]+B parameters)' "$out/torch-moe.log" 2>/dev/null | sed 's/^/torch reference: /'
grep -E '^(device:|\| (tokens/step|step time|tokens/s|model TFLOP/s|MFU|peak memory|loss|all ops|outside ops|step \(wall\)) )' \
  "$out/train-step.log" 2>/dev/null | sed 's/^/train step: /'
grep -E '^\| (tokens/s|model TFLOP/s|MFU|peak memory|loss) ' "$out/train-step-fp8.log" 2>/dev/null |
  sed 's/^/train step fp8: /'
echo
echo "gpu_check summary ($(date -u +%Y-%m-%dT%H:%MZ), $gpu)"
grep -E "Test +#[0-9]+: |tests passed|^Test |^cuda tests:" "$out/cuda-tests.log" 2>/dev/null | sed 's/^/  cuda: /'
printf '%s\n' "${results[@]}"
exit $failed
