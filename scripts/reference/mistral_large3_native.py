#!/usr/bin/env python3
"""Mistral Large 3 in Mistral's own format (params.json and consolidated.safetensors), full
precision and FP8, with transformers 5's Mistral4ForCausalLM as the reference (the same latent
attention, softmax routing and Llama 4 scaling; Large 3's native RoPE turns interleaved pairs, as
Mistral4's rope_interleave does on the tensors as they are).

    mistral_large3_native.py --out tests/fixtures/hf5/large3
        A small random model (3 layers of width 32, 4 heads with qk_nope 8, qk_rope 4, v 6,
        q_lora_rank 12, kv_lora_rank 16; layer 0 dense with hidden_dim 160; 8 experts of 8, top 2
        of 2 groups keeping 1, routed_scale 1.5, one shared expert; YaRN factor 4 from 4 with
        Mistral's implied mscale_all_dim 1; Llama 4 scaling beta 0.1 from 4), written as
          full/   params.json and consolidated.safetensors in f32 (Mistral's tensor names, as
                  vLLM's MistralLarge3ForCausalLM reads them)
          fp8/    the same with "quantization": {"qformat_weight": "fp8_e4m3"}: every projection
                  (attention, dense, experts, shared experts) in F8_E4M3 with an F32
                  `<name>.qscale_weight` that multiplies it: one per 128 x 128 block (blocks at
                  the edges cut short: hidden_dim 160 gives two row blocks, the second of 32), and
                  one for the whole of each attention.wo; a `.qscale_act` beside each wo (an
                  activation scale, not a weight). Embeddings, norms, the router and the output
                  stay f32. q = e4m3(w / s) with s = amax(block) / 448.
        and expected.json: transformers' float64 loss on every 16-token validation window of
        tests/fixtures/hf5/mla/data for the full model and for the dequantized one, and the
        largest |dequantized - full| relative to the e4m3 bound 2^-4 |w| + 2^-10 s.

Run with transformers 5 on torch 2 (scripts/reference/README.md):
    source /opt/hf5/env.sh; python3 scripts/reference/mistral_large3_native.py --out tests/fixtures/hf5/large3
"""
import argparse
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_interop import SEQ_LEN, randomize, read_shard, window_loss  # noqa: E402

VOCAB = 64
BLOCK = 128
PARAMS = {
    "dim": 32, "n_layers": 3, "head_dim": 12, "hidden_dim": 160, "n_heads": 4, "n_kv_heads": 4,
    "norm_eps": 1e-6, "vocab_size": VOCAB, "rope_theta": 500.0, "max_seq_len": 64,
    "max_position_embeddings": 64, "tied_embeddings": False,
    "q_lora_rank": 12, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 6,
    "moe": {"num_experts": 8, "num_experts_per_tok": 2, "expert_hidden_dim": 8, "first_k_dense_replace": 1,
            "num_shared_experts": 1, "routed_scale": 1.5, "num_expert_groups": 2,
            "num_expert_groups_per_tok": 1, "route_every_n": 1},
    "yarn": {"factor": 4.0, "original_max_position_embeddings": 4, "beta": 0.5, "alpha": 0.02},
    "llama_4_scaling": {"original_max_position_embeddings": 4, "beta": 0.1},
}


def config():
    from transformers import Mistral4Config

    p, moe = PARAMS, PARAMS["moe"]
    rope = {"rope_type": "yarn", "rope_theta": p["rope_theta"], "factor": p["yarn"]["factor"],
            "original_max_position_embeddings": p["yarn"]["original_max_position_embeddings"],
            "beta_fast": p["yarn"]["beta"], "beta_slow": p["yarn"]["alpha"], "mscale_all_dim": 1.0,
            "llama_4_scaling_beta": p["llama_4_scaling"]["beta"], "max_position_embeddings": 64,
            "partial_rotary_factor": 4 / 12}
    return Mistral4Config(vocab_size=VOCAB, hidden_size=p["dim"], intermediate_size=p["hidden_dim"],
                          moe_intermediate_size=moe["expert_hidden_dim"], num_hidden_layers=p["n_layers"],
                          num_attention_heads=p["n_heads"], num_key_value_heads=p["n_heads"],
                          n_routed_experts=moe["num_experts"], n_shared_experts=moe["num_shared_experts"],
                          kv_lora_rank=p["kv_lora_rank"], q_lora_rank=p["q_lora_rank"],
                          qk_nope_head_dim=p["qk_nope_head_dim"], qk_rope_head_dim=p["qk_rope_head_dim"],
                          v_head_dim=p["v_head_dim"], first_k_dense_replace=moe["first_k_dense_replace"],
                          n_group=moe["num_expert_groups"], topk_group=moe["num_expert_groups_per_tok"],
                          num_experts_per_tok=moe["num_experts_per_tok"], routed_scaling_factor=moe["routed_scale"],
                          norm_topk_prob=True, rope_interleave=True, max_position_embeddings=64,
                          rms_norm_eps=p["norm_eps"], tie_word_embeddings=False, pad_token_id=None,
                          rope_parameters=rope)


ATTN = {"q_a_proj": "wq_a", "q_a_layernorm": "q_a_norm", "q_b_proj": "wq_b",
        "kv_a_proj_with_mqa": "wkv_a_with_mqa", "kv_a_layernorm": "kv_a_norm", "kv_b_proj": "wkv_b",
        "o_proj": "wo"}
FFN = {"gate_proj": "w1", "up_proj": "w3", "down_proj": "w2"}


def native(state):
    """transformers' names -> Mistral Large 3's (per-expert tensors from the fused ones)."""
    out = {"tok_embeddings.weight": state["model.embed_tokens.weight"], "norm.weight": state["model.norm.weight"],
           "output.weight": state["lm_head.weight"]}
    for name, t in state.items():
        parts = name.split(".")
        if parts[:2] != ["model", "layers"]:
            continue
        layer, rest = parts[2], parts[3:]
        p = f"layers.{layer}."
        if rest[0] == "input_layernorm":
            out[p + "attention_norm.weight"] = t
        elif rest[0] == "post_attention_layernorm":
            out[p + "ffn_norm.weight"] = t
        elif rest[0] == "self_attn":
            out[p + f"attention.{ATTN[rest[1]]}.weight"] = t
        elif rest[1] == "gate":
            out[p + "gate.weight"] = t
        elif rest[1] == "shared_experts":
            out[p + f"shared_experts.{FFN[rest[2]]}.weight"] = t
        elif rest[1:] == ["experts", "gate_up_proj"]:
            f = t.shape[1] // 2
            for x in range(t.shape[0]):
                out[p + f"experts.{x}.w1.weight"] = t[x, :f]
                out[p + f"experts.{x}.w3.weight"] = t[x, f:]
        elif rest[1:] == ["experts", "down_proj"]:
            for x in range(t.shape[0]):
                out[p + f"experts.{x}.w2.weight"] = t[x]
        else:
            out[p + f"feed_forward.{FFN[rest[1]]}.weight"] = t
    return {k: v.detach().to(torch.float32).contiguous() for k, v in out.items()}


def quantized(name):
    return name.endswith(".weight") and ("attention.w" in name or "feed_forward" in name or "experts" in name)


def quantize(w, per_tensor):
    """e4m3 values and the f32 scale that multiplies them (per tensor, or per 128 x 128 block)."""
    if per_tensor:
        s = (w.abs().max() / 448.0).reshape(())
        full = s.expand_as(w)
    else:
        r, c = (w.shape[0] + BLOCK - 1) // BLOCK, (w.shape[1] + BLOCK - 1) // BLOCK
        s = torch.zeros(r, c)
        for i in range(r):
            for j in range(c):
                s[i, j] = w[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK].abs().max() / 448.0
        full = s.repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)[: w.shape[0], : w.shape[1]]
    q = (w / full).to(torch.float8_e4m3fn)
    return q, s.to(torch.float32), q.to(torch.float32) * full


def hf_state(tensors, like):
    """Mistral's names back into transformers' state dict (fused experts)."""
    state = {}
    for name in like:
        parts = name.split(".")
        if name == "model.embed_tokens.weight":
            state[name] = tensors["tok_embeddings.weight"]
        elif name == "model.norm.weight":
            state[name] = tensors["norm.weight"]
        elif name == "lm_head.weight":
            state[name] = tensors["output.weight"]
    for name in like:
        parts = name.split(".")
        if parts[:2] != ["model", "layers"]:
            continue
        layer, rest = parts[2], parts[3:]
        p = f"layers.{layer}."
        if rest[0] == "input_layernorm":
            state[name] = tensors[p + "attention_norm.weight"]
        elif rest[0] == "post_attention_layernorm":
            state[name] = tensors[p + "ffn_norm.weight"]
        elif rest[0] == "self_attn":
            state[name] = tensors[p + f"attention.{ATTN[rest[1]]}.weight"]
        elif rest[1] == "gate":
            state[name] = tensors[p + "gate.weight"]
        elif rest[1] == "shared_experts":
            state[name] = tensors[p + f"shared_experts.{FFN[rest[2]]}.weight"]
        elif rest[1:] == ["experts", "gate_up_proj"]:
            n = PARAMS["moe"]["num_experts"]
            state[name] = torch.stack([torch.cat([tensors[p + f"experts.{x}.w1.weight"],
                                                  tensors[p + f"experts.{x}.w3.weight"]]) for x in range(n)])
        elif rest[1:] == ["experts", "down_proj"]:
            n = PARAMS["moe"]["num_experts"]
            state[name] = torch.stack([tensors[p + f"experts.{x}.w2.weight"] for x in range(n)])
        else:
            state[name] = tensors[p + f"feed_forward.{FFN[rest[1]]}.weight"]
    return state


def main():
    import transformers
    from safetensors.torch import save_file
    from transformers import Mistral4ForCausalLM

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if os.path.exists(a.out):
        shutil.rmtree(a.out)
    gen = torch.Generator().manual_seed(20261205)
    torch.manual_seed(0)
    cfg = config()
    cfg._attn_implementation, cfg._experts_implementation = "eager", "eager"  # float64 runs
    model = Mistral4ForCausalLM(cfg)
    randomize(model, gen)
    model = model.to(torch.float32)
    full = native(model.state_dict())

    fp8, dequantized, worst = {}, {}, 0.0
    for name, w in full.items():
        if not quantized(name):
            fp8[name], dequantized[name] = w, w
            continue
        per_tensor = name.endswith("attention.wo.weight")
        q, s, d = quantize(w, per_tensor)
        base = name[: -len(".weight")]
        fp8[name], fp8[base + ".qscale_weight"], dequantized[name] = q, s, d
        if per_tensor:
            fp8[base + ".qscale_act"] = torch.ones((), dtype=torch.float32)
        bound = 2.0 ** -4 * w.abs() + 2.0 ** -10 * s.max()
        worst = max(worst, float(((d - w).abs() / bound).max()))
    for sub, tensors, extra in (("full", full, {}), ("fp8", fp8, {"quantization": {"qformat_weight": "fp8_e4m3",
                                                                                      "qscheme_act": "TENSOR"}})):
        os.makedirs(os.path.join(a.out, sub))
        with open(os.path.join(a.out, sub, "params.json"), "w") as f:
            json.dump({**PARAMS, **extra}, f, indent=1)
        save_file({k: v.contiguous() for k, v in tensors.items()},
                  os.path.join(a.out, sub, "consolidated.safetensors"))

    val = read_shard(os.path.join(os.path.dirname(os.path.abspath(a.out)), "mla", "data", "val", "shard-00000.bin"))
    like = list(model.state_dict().keys())
    expected = {"generator": "scripts/reference/mistral_large3_native.py",
                "transformers": transformers.__version__, "torch": torch.__version__, "seq_len": SEQ_LEN,
                "data": "tests/fixtures/hf5/mla/data", "worst_fp8_error_over_bound": worst}
    for name, tensors in (("full", full), ("fp8", dequantized)):
        model.load_state_dict(hf_state(tensors, like), strict=True)
        e = window_loss(model, val, SEQ_LEN)
        expected[name] = e
        print(f"{name}: val_loss {e['val_loss']:.9f} over {e['tokens']} tokens")
    print(f"worst |dequantized - full| / (2^-4 |w| + 2^-10 s): {worst:.3f}")
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
