#!/usr/bin/env bash
# Checkpoint save and load speed for a model with about 1 GB of training state (fp32 parameters and
# both AdamW moments: 12 bytes per parameter), on RANKS local ranks, beside the raw write speed of
# the same disk (dd with fsync). One training step is taken (tiny batch) so that the moments exist.
#   scripts/bench/checkpoint.sh [RANKS] [DIR]     (default 2 ranks, a directory under /tmp)
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh >&2
bin=${TMT_BUILD_DIR:-build}/tramontane
ranks=${1:-2}
dir=${2:-$(mktemp -d /tmp/tmt-ckpt-bench.XXXXXX)}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# ~88M parameters (~1.06 GB of state): d_model 512, 8 layers of 8 experts with hidden 672, vocab
# 16000.
model=(--set model.vocab_size=16000 --set model.d_model=512 --set model.n_layers=8
  --set model.n_heads=8 --set model.n_kv_heads=4 --set model.head_dim=64 --set model.ffn_hidden=1344
  --set model.moe.n_experts=8 --set model.moe.expert_ffn_hidden=672 --set model.max_seq_len=32
  --set data.seq_len=32 --set train.global_batch="$ranks" --set train.micro_batch=1
  --set schedule.warmup_steps=0 --set log.eval_every=0 --set parallel.tp=1 --set parallel.pp=1
  --set parallel.ep="$ranks" --set run.dir="$dir/run")
run() { mpirun -n "$ranks" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 "$bin" train "$@" 2>&1; }
"$bin" check "${model[@]}" --world "$ranks" | grep -m1 parameters
save=$(run "${model[@]}" --set train.steps=1 --no-resume | grep -m1 "checkpoint: ")
load=$(run "${model[@]}" --set train.steps=2 | grep -m1 "resumed from")
sync
dd_out=$(dd if=/dev/zero of="$dir/dd.bin" bs=1M count=1024 conv=fsync 2>&1 | tail -n 1)
rm -f "$dir/dd.bin"
echo "save: ${save#*checkpoint: }"
echo "load: ${load#*resumed from }"
echo "dd (1 GiB, conv=fsync): $dd_out"
echo "machine: $(nproc) cores, $(df -h "$dir" | awk 'NR == 2 { print $1 " (" $2 ")" }'), $ranks ranks"
[ -z "${2:-}" ] && rm -rf "$dir"
