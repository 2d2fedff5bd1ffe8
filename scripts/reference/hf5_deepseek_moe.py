#!/usr/bin/env python3
"""An independent check of tramontane's DeepSeek-V3 routing: transformers 5's own DeepseekV3MoE block
(sigmoid scores, e_score_correction_bias for the choice, n_group / topk_group group-limited choice,
norm_topk_prob, routed_scaling_factor, one shared expert) with small random weights, run in fp64 on
random inputs, its output and the gradients of sum(output * dy) with respect to the input and every
weight written to tests/fixtures/hf5/deepseek_moe/moe.safetensors (read by
tests/trainer/deepseek_moe_parity_test.cpp).

  source /opt/hf5/env.sh; python3 scripts/reference/hf5_deepseek_moe.py   (transformers 5.23, torch 2.15)
"""
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import DeepseekV3Config
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE

D, F, E, K, GROUPS, KEPT, SCALING, SHARED, T = 16, 8, 8, 3, 4, 2, 2.5, 1, 13

torch.manual_seed(14)
config = DeepseekV3Config(hidden_size=D, moe_intermediate_size=F, n_routed_experts=E,
                          num_experts_per_tok=K, n_group=GROUPS, topk_group=KEPT,
                          routed_scaling_factor=SCALING, n_shared_experts=SHARED,
                          norm_topk_prob=True, hidden_act="silu")
moe = DeepseekV3MoE(config).double()
with torch.no_grad():
    moe.gate.weight.normal_(0.0, 0.5)
    moe.gate.e_score_correction_bias.copy_(0.1 * torch.randn(E, dtype=torch.float64))
    moe.experts.gate_up_proj.normal_(0.0, 0.3)
    moe.experts.down_proj.normal_(0.0, 0.3)
    for lin in (moe.shared_experts.gate_proj, moe.shared_experts.up_proj,
                moe.shared_experts.down_proj):
        lin.weight.normal_(0.0, 0.3)
x = torch.randn(1, T, D, dtype=torch.float64, requires_grad=True)
dy = torch.randn(1, T, D, dtype=torch.float64)
y = moe(x)
(y * dy).sum().backward()
_, weights, indices = moe.gate(x.detach())
tensors = {
    "x": x.detach()[0], "dy": dy[0], "y": y.detach()[0], "dx": x.grad[0],
    "router": moe.gate.weight.detach(), "bias": moe.gate.e_score_correction_bias.detach().clone(),
    "w13": moe.experts.gate_up_proj.detach(), "w2": moe.experts.down_proj.detach(),
    "shared_gate": moe.shared_experts.gate_proj.weight.detach(),
    "shared_up": moe.shared_experts.up_proj.weight.detach(),
    "shared_down": moe.shared_experts.down_proj.weight.detach(),
    "drouter": moe.gate.weight.grad, "dw13": moe.experts.gate_up_proj.grad,
    "dw2": moe.experts.down_proj.grad,
    "dshared_gate": moe.shared_experts.gate_proj.weight.grad,
    "dshared_up": moe.shared_experts.up_proj.weight.grad,
    "dshared_down": moe.shared_experts.down_proj.weight.grad,
    "topk_idx": indices.to(torch.int32).sort(dim=-1).values, "topk_w": weights.double(),
}
tensors = {k: v.contiguous() for k, v in tensors.items()}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../tests/fixtures/hf5/deepseek_moe")
os.makedirs(out, exist_ok=True)
save_file(tensors, os.path.join(out, "moe.safetensors"),
          metadata={"d_model": str(D), "expert_ffn_hidden": str(F), "n_experts": str(E),
                    "top_k": str(K), "n_groups": str(GROUPS), "topk_groups": str(KEPT),
                    "routed_scaling_factor": str(SCALING), "n_shared_experts": str(SHARED),
                    "tokens": str(T), "made_by": "transformers " + __import__("transformers").__version__
                    + ", torch " + torch.__version__})
print("wrote", os.path.join(out, "moe.safetensors"), "T", T, "chosen", indices.tolist(), file=sys.stderr)
