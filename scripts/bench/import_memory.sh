#!/usr/bin/env bash
# Peak memory of `tramontane import` on a model with Mixtral 8x7B's tensor shapes (d_model 4096,
# 8 experts of 14336, vocab 32000, 32 query / 8 kv heads), bf16, in Hugging Face's sharded layout
# (one safetensors file per layer and the index). The files are written sparsely (a header, then
# a hole), so they take no disk and read as zeros; the import still reads, converts and writes
# every byte. LAYERS of the 32 layers (default 4): the checkpoint it writes is f32, 5.8 GB a layer
# (all 32: 187 GB). Peak RSS does not grow with the layer count: import holds one published tensor
# at a time (the largest is an expert's w1, 117 MB in bf16, 235 MB in f32).
#   scripts/bench/import_memory.sh [LAYERS] [DIR]     (default 4 layers, a directory under /tmp)
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh >&2
bin=${TMT_BUILD_DIR:-build}/tramontane
layers=${1:-4}
dir=${2:-$(mktemp -d /tmp/tmt-import-bench.XXXXXX)}
python3 - "$dir/src" "$layers" <<'PY'
import json, os, struct, sys
out, layers = sys.argv[1], int(sys.argv[2])
d, f, v, heads, kv, dh, experts = 4096, 14336, 32000, 32, 8, 128, 8
os.makedirs(out, exist_ok=True)
config = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "vocab_size": v,
          "hidden_size": d, "intermediate_size": f, "num_hidden_layers": layers,
          "num_attention_heads": heads, "num_key_value_heads": kv, "max_position_embeddings": 32768,
          "rms_norm_eps": 1e-5, "rope_theta": 1e6, "sliding_window": None,
          "tie_word_embeddings": False, "num_local_experts": experts, "num_experts_per_tok": 2,
          "router_aux_loss_coef": 0.02, "torch_dtype": "bfloat16"}
json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=1)
files = [{"model.embed_tokens.weight": [v, d], "model.norm.weight": [d], "lm_head.weight": [v, d]}]
for l in range(layers):
    p = f"model.layers.{l}."
    t = {p + "input_layernorm.weight": [d], p + "post_attention_layernorm.weight": [d],
         p + "self_attn.q_proj.weight": [heads * dh, d], p + "self_attn.k_proj.weight": [kv * dh, d],
         p + "self_attn.v_proj.weight": [kv * dh, d], p + "self_attn.o_proj.weight": [d, heads * dh],
         p + "block_sparse_moe.gate.weight": [experts, d]}
    for e in range(experts):
        q = f"{p}block_sparse_moe.experts.{e}."
        t.update({q + "w1.weight": [f, d], q + "w2.weight": [d, f], q + "w3.weight": [f, d]})
    files.append(t)
weight_map, total = {}, 0
for i, tensors in enumerate(files):
    name = f"model-{i + 1:05d}-of-{len(files):05d}.safetensors"
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for t, shape in tensors.items():
        n = 2
        for s in shape:
            n *= s
        header[t] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
        weight_map[t] = name
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(os.path.join(out, name), "wb") as fh:
        fh.write(struct.pack("<Q", len(text)) + text)
        fh.truncate(8 + len(text) + offset)  # the data: a hole
    total += offset
json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
          open(os.path.join(out, "model.safetensors.index.json"), "w"))
print(f"source: {layers} layers, {total / 1e9:.1f} GB of bf16 in {len(files)} sparse files "
      f"({os.popen('du -sh ' + out).read().split()[0]} on disk)")
PY
rm -rf "$dir/run"
/usr/bin/time -v "$bin" import "$dir/src" --out "$dir/run" 2>"$dir/time.txt"
grep -E "Maximum resident|Elapsed" "$dir/time.txt"
echo "checkpoint: $(du -sh "$dir/run/checkpoints/step-0000000" | cut -f1)"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ { print $2 " GB RAM" }'), $(date -u +%F)"
[ -z "${2:-}" ] && rm -rf "$dir"
