#!/usr/bin/env python3
"""Latent-attention fixtures made with transformers 5's own DeepseekV3ForCausalLM and
Mistral4ForCausalLM (an independent implementation of MLA, its RoPE layouts and YaRN softmax scale,
DeepSeek-V3's and Mistral 4's routers, shared experts and dense first layers).

    hf5_mla.py --out tests/fixtures/hf5/mla
        Writes two small random models, saved with save_pretrained (fp32 safetensors), each with
        no pad_token_id (transformers' embedding would give
        that row no gradient), 3 layers of width 32, 4 heads (qk_nope 8, qk_rope 4, v 6, kv_lora_rank 16), layer 0 dense
        (intermediate_size 48) and 8 routed experts of 8 in layers 1 and 2:
          deepseek_v3/  DeepseekV3ForCausalLM: queries without a latent (q_lora_rank null),
                        interleaved RoPE, YaRN factor 4 from 4 with mscale 1 / mscale_all_dim 0.7
                        (cos/sin scaled by g(1)/g(0.7), the softmax by g(0.7)²), sigmoid routing
                        with a random e_score_correction_bias, 4 groups keeping 2, top 3, routed
                        scaling 2.5, one shared expert
          mistral4/     Mistral4ForCausalLM: rms_norm_eps 3e-4 (the latent norms keep their 1e-6:
                        transformers builds q_a_layernorm and kv_a_layernorm with RMSNorm's
                        default whatever rms_norm_eps says), q_lora_rank 12, rotate-half RoPE, YaRN with
                        mscale_all_dim 0.5 alone, Llama 4's query scaling (beta 0.1 from 4, the
                        scale steps at positions 4, 8, 12), softmax routing, 2 groups keeping 1,
                        top 2, routed scaling 1.5, two shared experts (2 × moe_intermediate_size)
        and for each, reference.safetensors: `tokens`, `targets` (I32 [2, 16]), `loss` (F64 [1],
        the mean cross-entropy over every target, computed in float64), `logits` (F32 [2, 16, V])
        and `grad.<saved name>` (F32) for every weight, the gradient of that loss in float64
        (DeepSeek-V3's fused expert gradients split per expert, as save_pretrained writes them); data/{train,val}/shard-00000.bin (tramontane's shard format, tokens < 64) and
        expected.json: each model's loss on every 16-token validation window (float64) and
        min_routing_gap, the smallest margin of any routing choice (group or expert) seen on the
        batch and the windows (an fp32 run could choose differently below about 1e-5).

Run with transformers 5 on torch 2 (scripts/reference/README.md):
    source /opt/hf5/env.sh; python3 scripts/reference/hf5_mla.py --out tests/fixtures/hf5/mla
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_interop import SEQ_LEN, VAL_WINDOWS, randomize, window_loss, write_shard  # noqa: E402

VOCAB = 64
BATCH = 2


def config(name):
    from transformers import DeepseekV3Config, Mistral4Config

    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, moe_intermediate_size=8,
                  num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=8,
                  kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=6,
                  first_k_dense_replace=1, norm_topk_prob=True, max_position_embeddings=64,
                  tie_word_embeddings=False, pad_token_id=None)
    rope = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 4,
            "beta_fast": 0.5, "beta_slow": 0.02}
    if name == "deepseek_v3":
        rope.update({"mscale": 1.0, "mscale_all_dim": 0.7})
        return DeepseekV3Config(**common, rms_norm_eps=1e-6, q_lora_rank=None, n_shared_experts=1, n_group=4, topk_group=2,
                                num_experts_per_tok=3, routed_scaling_factor=2.5, rope_interleave=True,
                                rope_parameters=rope)
    rope.update({"rope_theta": 500.0, "mscale_all_dim": 0.5, "llama_4_scaling_beta": 0.1,
                 "max_position_embeddings": 64, "partial_rotary_factor": 4 / 12})
    return Mistral4Config(**common, rms_norm_eps=3e-4, q_lora_rank=12, n_shared_experts=2, n_group=2, topk_group=1,
                          num_experts_per_tok=2, routed_scaling_factor=1.5, rope_interleave=False,
                          rope_parameters=rope)


def save_safetensors(path, tensors):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata={"format": "pt"})


class RoutingGaps:
    """The smallest margin of any routing decision, recomputed in float64 from each router's input."""

    def __init__(self, model, sigmoid):
        self.gap = float("inf")
        self.sigmoid = sigmoid
        for layer in model.model.layers:
            if hasattr(layer.mlp, "gate"):
                layer.mlp.gate.register_forward_hook(self.hook)

    def hook(self, gate, inputs, _):
        h = inputs[0].detach().reshape(-1, gate.weight.shape[1]).double()
        logits = h @ gate.weight.detach().double().t()
        scores = logits.sigmoid() if self.sigmoid else logits.softmax(-1)
        if self.sigmoid:
            scores = scores + gate.e_score_correction_bias.double()
        groups = scores.view(-1, gate.num_group, scores.shape[1] // gate.num_group)
        group_scores = groups.topk(2, dim=-1)[0].sum(-1).sort(-1, descending=True)[0]
        if gate.num_group > gate.topk_group:
            g = group_scores[:, gate.topk_group - 1] - group_scores[:, gate.topk_group]
            self.gap = min(self.gap, float(g.min()))
        kept = group_scores[:, gate.topk_group - 1 : gate.topk_group]
        eligible = groups.topk(2, dim=-1)[0].sum(-1) >= kept
        masked = scores.masked_fill(~eligible.repeat_interleave(groups.shape[2], dim=1), float("-inf"))
        top = masked.sort(-1, descending=True)[0]
        self.gap = min(self.gap, float((top[:, gate.top_k - 1] - top[:, gate.top_k]).min()))


def split_experts(ref, out):
    """The gradients of fused experts under the names save_pretrained wrote (DeepseekV3ForCausalLM
    saves experts.X.{gate,up,down}_proj.weight; Mistral4ForCausalLM keeps the fused tensors)."""
    from safetensors import safe_open

    with safe_open(os.path.join(out, "model.safetensors"), "pt") as f:
        saved = set(f.keys())
    for name in [n for n in ref if n.endswith(".experts.gate_up_proj")]:
        prefix = name[len("grad."):-len("gate_up_proj")]
        if prefix + "gate_up_proj" in saved:
            continue
        gate_up, down = ref.pop(name), ref.pop("grad." + prefix + "down_proj")
        f = gate_up.shape[1] // 2
        for x in range(gate_up.shape[0]):
            ref[f"grad.{prefix}{x}.gate_proj.weight"] = gate_up[x, :f]
            ref[f"grad.{prefix}{x}.up_proj.weight"] = gate_up[x, f:]
            ref[f"grad.{prefix}{x}.down_proj.weight"] = down[x]


def make(out, name, gen, tokens, targets, val):
    from transformers import DeepseekV3ForCausalLM, Mistral4ForCausalLM

    torch.manual_seed(0)
    cls = DeepseekV3ForCausalLM if name == "deepseek_v3" else Mistral4ForCausalLM
    model = cls(config(name))
    randomize(model, gen)
    with torch.no_grad():
        for layer in model.model.layers:
            if hasattr(layer.mlp, "gate") and hasattr(layer.mlp.gate, "e_score_correction_bias"):
                bias = layer.mlp.gate.e_score_correction_bias
                bias.copy_(0.05 * torch.randn(bias.shape, generator=gen, dtype=torch.float64))
    model = model.to(torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    # The reference is the saved model, reloaded (its class: AutoModelForCausalLM does not list
    # Mistral 4 yet) with the eager experts, computed in float64.
    model = cls.from_pretrained(out, attn_implementation="eager",
                                experts_implementation="eager").double().eval()
    gaps = RoutingGaps(model, name == "deepseek_v3")
    rot = model.model.rotary_emb
    print(f"{name}: attention factor {rot.attention_scaling:.6f}, softmax scale "
          f"{model.model.layers[0].self_attn.scaling:.6f}, inv_freq {[round(float(f), 6) for f in rot.inv_freq]}")
    model.zero_grad()
    logits = model(input_ids=tokens).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1).long())
    loss.backward()
    ref = {"tokens": tokens.to(torch.int32), "targets": targets.to(torch.int32),
           "loss": loss.detach().reshape(1), "logits": logits.detach().to(torch.float32)}
    for pname, p in model.named_parameters():
        ref["grad." + pname] = p.grad.detach().to(torch.float32)
    split_experts(ref, out)
    save_safetensors(os.path.join(out, "reference.safetensors"), ref)
    print(f"  loss {float(loss.detach()):.9f}, {len(ref) - 4} gradients")
    result = window_loss(model, val, SEQ_LEN)
    result["min_routing_gap"] = gaps.gap
    print(f"  min routing gap {gaps.gap:.3e}")
    if gaps.gap < 1e-4:
        print("  warning: a routing choice within 1e-4; choose another seed", file=sys.stderr)
    return result


def main():
    import transformers

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if os.path.exists(a.out):
        shutil.rmtree(a.out)
    os.makedirs(a.out)
    rng = np.random.default_rng(20261204)
    gen = torch.Generator().manual_seed(20261204)
    data = {"train": rng.integers(0, VOCAB, 1024), "val": rng.integers(0, VOCAB, SEQ_LEN * VAL_WINDOWS + 1)}
    for split in ("train", "val"):
        write_shard(os.path.join(a.out, "data", split, "shard-00000.bin"), data[split], VOCAB)
    seqs = torch.tensor(rng.integers(0, VOCAB, (BATCH, SEQ_LEN + 1)))
    tokens, targets = seqs[:, :-1], seqs[:, 1:]
    expected = {"generator": "scripts/reference/hf5_mla.py", "transformers": transformers.__version__,
                "torch": torch.__version__, "seq_len": SEQ_LEN}
    for name in ("deepseek_v3", "mistral4"):
        e = make(os.path.join(a.out, name), name, gen, tokens, targets, data["val"])
        expected[name] = e
        print(f"  val_loss {e['val_loss']:.9f} over {e['tokens']} tokens")
    with open(os.path.join(a.out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
