#!/usr/bin/python3
"""Float64 PyTorch reference of tramontane's MoE transformer: loss parts and weight gradients.

Reads `inputs.safetensors` (written by `build/tests/reference_inputs OUT_DIR`), computes the forward
pass and the backward of the total loss in float64 with torch autograd, and writes
`expected.safetensors`. The C++ gradient-parity test compares its fp32 results with this file.

Shapes: T = B*S tokens, D d_model, H heads, Hk kv heads, Dh head dim, E experts, K top-k,
F ffn hidden (Fe per expert, Fsh shared), V vocab, S sequence, B batch. Weights are [out, in].

Semantics (every weight converted to a float64 leaf tensor):
  x = embedding[tokens]                                                           [B, S, D]
  per layer l:
    RMSNorm(x; w) = x / sqrt(mean(x^2, -1) + eps) * w
    h = RMSNorm(x; attn.norm)
    q = h @ wq.T -> [B, S, H, Dh];  k = h @ wk.T, v = h @ wv.T -> [B, S, Hk, Dh]
    RoPE (rotate_half convention): inv_freq[i] = theta^(-2i/Dh), i in [0, Dh/2);
      angle[p, i] = p * inv_freq[i] with p in 0..S-1 per sequence; cos = [cos(angle), cos(angle)],
      sin likewise; rotate_half(z) = cat(-z[Dh/2:], z[:Dh/2]);
      q' = q*cos + rotate_half(q)*sin, k' likewise
    scores[h, i, j] = q'_i . k'_j / sqrt(Dh), query head h reads kv head h // (H/Hk);
      key j visible to query i iff j <= i (and i - W < j with a sliding window W)
    attn = softmax_j(scores) @ v -> [T, H*Dh] @ wo.T;  x = x + attn
    h2 = RMSNorm(x; ffn_norm)                                                     [T, D]
    dense layer:  [g | u] = h2 @ w13.T (g = first F columns); y = (silu(g) * u) @ w2.T
    MoE layer:    logits = h2 @ router.T [T, E]; p = softmax(logits) (or sigmoid(logits), "sigmoid")
                  idx = the K largest p per token (ties: lower expert index first), topv = p[idx]
                  w = topv / sum_k topv                                           (renormalised)
                  y[t] = sum_k w[t, k] * Expert_idx[t,k](h2[t]),
                  Expert_e(z) = (silu(z @ w13[e, :Fe].T) * (z @ w13[e, Fe:].T)) @ w2[e].T
                  y += SwiGLU(h2; shared.w13, shared.w2) when n_shared_experts > 0
                  aux_l = aux_loss_coeff * E * sum_e f_e * P_e,
                    f_e = #{(t, k): idx[t, k] == e} / (T*K), a constant (no gradient),
                    P_e = mean_t p[t, e]   (p as scored: softmax, or sigmoid without normalisation)
                  z_l = z_loss_coeff * mean_t logsumexp(logits[t])^2
    x = x + y
  logits = RMSNorm(x; final_norm) @ head.T  (head = embedding when tie_embeddings)      [T, V]
  lm_loss = mean over targets >= 0 of cross_entropy(logits[t], targets[t])
  aux_loss = sum_l aux_l; z_loss = sum_l z_l; loss = lm_loss + aux_loss + z_loss
  Top-k selection is piecewise constant: the gradient is autograd through the gathered values with
  the selection fixed.

Output (expected.safetensors): F64 scalars (shape []) `loss`, `lm_loss`, `aux_loss`, `z_loss`;
`grad.<name>` (F64, shape of the weight) for every input weight. The metadata is the input's plus
"generator", "torch_version" and "min_routing_gap" (smallest p[K-th] - p[(K+1)-th] over MoE tokens;
a C++ fp32 run may route differently when this is near fp32 round-off).
"""

import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

GENERATOR = "scripts/reference/mixtral_reference.py"
CONFIG_KEYS = (
    "vocab_size d_model n_layers n_heads n_kv_heads head_dim ffn_hidden norm_eps rope_theta "
    "sliding_window tie_embeddings moe seq_len batch"
).split()
MOE_KEYS = (
    "n_experts top_k expert_ffn_hidden n_shared_experts shared_expert_ffn_hidden moe_layers score "
    "aux_loss_coeff z_loss_coeff"
).split()
SCORES = ("softmax", "sigmoid")
INPUT_ARRAYS = ("tokens", "targets")
ROUTING_GAP_WARNING = 1e-5


class ReferenceInputError(ValueError):
    """The inputs file does not describe a model this reference understands."""


# ----------------------------------------------------------------------------------------------
# Configuration and weights


def parse_config(metadata):
    """Parses and validates __metadata__["config"]; returns a plain dict."""
    if "config" not in metadata:
        raise ReferenceInputError("inputs: __metadata__ has no 'config' entry")
    config = json.loads(metadata["config"])
    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing:
        raise ReferenceInputError(f"config: missing keys {missing}")
    if config["n_heads"] % config["n_kv_heads"] != 0:
        raise ReferenceInputError(
            f"config: n_heads {config['n_heads']} is not a multiple of n_kv_heads "
            f"{config['n_kv_heads']}"
        )
    if config["head_dim"] % 2 != 0:
        raise ReferenceInputError(f"config: head_dim {config['head_dim']} must be even for RoPE")
    window = config["sliding_window"]
    if window is not None and window < 1:
        raise ReferenceInputError(f"config: sliding_window {window} must be null or >= 1")
    moe = config["moe"]
    if moe is not None:
        missing = [k for k in MOE_KEYS if k not in moe]
        if missing:
            raise ReferenceInputError(f"config.moe: missing keys {missing}")
        if not 1 <= moe["top_k"] <= moe["n_experts"]:
            raise ReferenceInputError(
                f"config.moe: top_k {moe['top_k']} not in [1, n_experts={moe['n_experts']}]"
            )
        if moe["score"] not in SCORES:
            raise ReferenceInputError(f"config.moe: score {moe['score']!r} not in {SCORES}")
        bad = [l for l in moe["moe_layers"] if not 0 <= l < config["n_layers"]]
        if bad:
            raise ReferenceInputError(f"config.moe: moe_layers {bad} outside [0, n_layers)")
    return config


def is_moe_layer(config, layer):
    return config["moe"] is not None and layer in config["moe"]["moe_layers"]


def weight_shapes(config):
    """The name -> shape of every weight the config implies (PyTorch layout [out, in])."""
    V, D = config["vocab_size"], config["d_model"]
    H, Hk, Dh = config["n_heads"], config["n_kv_heads"], config["head_dim"]
    shapes = {"embedding": [V, D], "final_norm": [D]}
    if not config["tie_embeddings"]:
        shapes["head"] = [V, D]
    for l in range(config["n_layers"]):
        p = f"layers.{l}."
        shapes[p + "attn.norm"] = [D]
        shapes[p + "attn.wq"] = [H * Dh, D]
        shapes[p + "attn.wk"] = [Hk * Dh, D]
        shapes[p + "attn.wv"] = [Hk * Dh, D]
        shapes[p + "attn.wo"] = [D, H * Dh]
        shapes[p + "ffn_norm"] = [D]
        if is_moe_layer(config, l):
            moe = config["moe"]
            E, Fe = moe["n_experts"], moe["expert_ffn_hidden"]
            shapes[p + "moe.router"] = [E, D]
            shapes[p + "moe.w13"] = [E, 2 * Fe, D]
            shapes[p + "moe.w2"] = [E, D, Fe]
            if moe["n_shared_experts"] > 0:
                Fsh = moe["n_shared_experts"] * moe["shared_expert_ffn_hidden"]
                shapes[p + "shared.w13"] = [2 * Fsh, D]
                shapes[p + "shared.w2"] = [D, Fsh]
        else:
            F_ = config["ffn_hidden"]
            shapes[p + "ffn.w13"] = [2 * F_, D]
            shapes[p + "ffn.w2"] = [D, F_]
    return shapes


def load_weights(arrays, config):
    """Checks names/shapes/dtypes and returns name -> float64 leaf tensor with requires_grad."""
    shapes = weight_shapes(config)
    present = set(arrays) - set(INPUT_ARRAYS)
    if present != set(shapes):
        raise ReferenceInputError(
            f"inputs: weights missing {sorted(set(shapes) - present)}, "
            f"unexpected {sorted(present - set(shapes))}"
        )
    weights = {}
    for name, shape in shapes.items():
        array = arrays[name]
        if list(array.shape) != shape or array.dtype != np.float32:
            raise ReferenceInputError(
                f"inputs: weight '{name}' is {array.dtype} {list(array.shape)}, expected "
                f"float32 {shape}"
            )
        weights[name] = torch.tensor(array, dtype=torch.float64, requires_grad=True)
    return weights


def load_batch(arrays, config):
    """Returns (tokens, targets) as int64 tensors [B, S], validated against the config."""
    B, S, V = config["batch"], config["seq_len"], config["vocab_size"]
    batch = []
    for name in INPUT_ARRAYS:
        if name not in arrays:
            raise ReferenceInputError(f"inputs: no '{name}' tensor")
        array = arrays[name]
        if list(array.shape) != [B, S] or array.dtype.kind != "i":
            raise ReferenceInputError(
                f"inputs: '{name}' is {array.dtype} {list(array.shape)}, expected int [{B}, {S}]"
            )
        batch.append(torch.tensor(array, dtype=torch.int64))
    tokens, targets = batch
    if tokens.min() < 0 or tokens.max() >= V:
        raise ReferenceInputError(f"inputs: tokens outside [0, {V})")
    if targets.max() >= V:
        raise ReferenceInputError(f"inputs: targets >= vocab_size {V}")
    if (targets >= 0).sum() == 0:
        raise ReferenceInputError("inputs: every target is ignored (< 0); the loss is undefined")
    return tokens, targets


# ----------------------------------------------------------------------------------------------
# Components


def rms_norm(x, weight, eps):
    """x / sqrt(mean(x^2, -1) + eps) * weight."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope_cos_sin(seq_len, head_dim, theta):
    """cos, sin [S, Dh] for positions 0..S-1, each half-frequency vector repeated twice."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(x, cos, sin):
    """x [B, heads, S, Dh]; cos, sin [S, Dh]."""
    return x * cos + rotate_half(x) * sin


def repeat_kv(x, n_rep):
    """[B, Hk, S, Dh] -> [B, Hk*n_rep, S, Dh]; query head h reads kv head h // n_rep."""
    B, Hk, S, Dh = x.shape
    return x[:, :, None].expand(B, Hk, n_rep, S, Dh).reshape(B, Hk * n_rep, S, Dh)


def attention_mask(seq_len, window):
    """Bool [S, S], True where key j is visible to query i: j <= i and (no window or i - W < j)."""
    i = torch.arange(seq_len)[:, None]
    j = torch.arange(seq_len)[None, :]
    visible = j <= i
    if window is not None:
        visible &= j > i - window
    return visible


def attention(h, wq, wk, wv, wo, config):
    """Causal GQA self-attention with RoPE. h [B, S, D] -> [B, S, D]."""
    B, S, _ = h.shape
    H, Hk, Dh = config["n_heads"], config["n_kv_heads"], config["head_dim"]
    q = (h @ wq.T).view(B, S, H, Dh).transpose(1, 2)
    k = (h @ wk.T).view(B, S, Hk, Dh).transpose(1, 2)
    v = (h @ wv.T).view(B, S, Hk, Dh).transpose(1, 2)
    cos, sin = rope_cos_sin(S, Dh, config["rope_theta"])
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    k, v = repeat_kv(k, H // Hk), repeat_kv(v, H // Hk)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(Dh)
    scores = scores.masked_fill(~attention_mask(S, config["sliding_window"]), float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    return out.transpose(1, 2).reshape(B, S, H * Dh) @ wo.T


def swiglu(z, w13, w2):
    """(silu(z @ w13[:F].T) * (z @ w13[F:].T)) @ w2.T with F = w13.shape[0] / 2. z [N, D]."""
    hidden = w13.shape[0] // 2
    gate_up = z @ w13.T
    return (F.silu(gate_up[:, :hidden]) * gate_up[:, hidden:]) @ w2.T


def router_scores(logits, score):
    return torch.softmax(logits, dim=-1) if score == "softmax" else torch.sigmoid(logits)


def select_top_k(probs, top_k):
    """(values, indices) [T, K] of the K largest probs per row; ties go to the lower index."""
    order = torch.sort(probs, dim=-1, descending=True, stable=True).indices[:, :top_k]
    return probs.gather(-1, order), order


def routing_gap(probs, top_k):
    """Smallest margin p[K-th] - p[(K+1)-th] over tokens (inf when K == E)."""
    if top_k == probs.shape[-1]:
        return math.inf
    ranked = torch.sort(probs.detach(), dim=-1, descending=True).values
    return float((ranked[:, top_k - 1] - ranked[:, top_k]).min())


def load_balancing_loss(probs, indices, coeff):
    """coeff * E * sum_e f_e * P_e; f_e (routed fraction) is constant, P_e = mean_t probs[t, e]."""
    T, E = probs.shape
    with torch.no_grad():
        fraction = torch.bincount(indices.flatten(), minlength=E).to(torch.float64)
        fraction /= indices.numel()
    return coeff * E * (fraction * probs.mean(dim=0)).sum()


def router_z_loss(logits, coeff):
    """coeff * mean_t logsumexp(logits[t])^2."""
    return coeff * torch.logsumexp(logits, dim=-1).pow(2).mean()


def moe_block(h, weights, prefix, config):
    """Token-choice top-k MoE (+ shared experts). h [T, D] -> (y [T, D], aux, z, routing gap)."""
    moe = config["moe"]
    E, K = moe["n_experts"], moe["top_k"]
    w13, w2 = weights[prefix + "moe.w13"], weights[prefix + "moe.w2"]
    logits = h @ weights[prefix + "moe.router"].T
    probs = router_scores(logits, moe["score"])
    top_values, top_indices = select_top_k(probs, K)
    top_weights = top_values / top_values.sum(dim=-1, keepdim=True)

    y = torch.zeros_like(h)
    for e in range(E):
        token_ids, slots = torch.nonzero(top_indices == e, as_tuple=True)
        if token_ids.numel() == 0:
            continue
        expert_out = swiglu(h[token_ids], w13[e], w2[e])
        y = y.index_add(0, token_ids, expert_out * top_weights[token_ids, slots, None])
    if moe["n_shared_experts"] > 0:
        y = y + swiglu(h, weights[prefix + "shared.w13"], weights[prefix + "shared.w2"])

    aux = load_balancing_loss(probs, top_indices, moe["aux_loss_coeff"])
    z = router_z_loss(logits, moe["z_loss_coeff"])
    return y, aux, z, routing_gap(probs, K)


def decoder_layer(x, weights, layer, config, moe_fn):
    """One pre-norm block. x [B, S, D] -> (x, aux, z, routing gap)."""
    p = f"layers.{layer}."
    eps = config["norm_eps"]
    h = rms_norm(x, weights[p + "attn.norm"], eps)
    x = x + attention(
        h, weights[p + "attn.wq"], weights[p + "attn.wk"], weights[p + "attn.wv"],
        weights[p + "attn.wo"], config,
    )
    h2 = rms_norm(x, weights[p + "ffn_norm"], eps).reshape(-1, x.shape[-1])
    zero = torch.zeros((), dtype=torch.float64)
    if is_moe_layer(config, layer):
        y, aux, z, gap = moe_fn(h2, weights, p, config)
    else:
        y = swiglu(h2, weights[p + "ffn.w13"], weights[p + "ffn.w2"])
        aux, z, gap = zero, zero, math.inf
    return x + y.view_as(x), aux, z, gap


def language_model_loss(x, weights, targets, config):
    """Mean cross-entropy over targets >= 0 of RMSNorm(x) @ head.T."""
    head = weights["embedding"] if config["tie_embeddings"] else weights["head"]
    hf = rms_norm(x, weights["final_norm"], config["norm_eps"]).reshape(-1, x.shape[-1])
    logits = hf @ head.T
    flat_targets = targets.reshape(-1)
    valid = flat_targets >= 0
    return F.cross_entropy(logits[valid], flat_targets[valid], reduction="mean")


def forward_losses(weights, tokens, targets, config, moe_fn=moe_block):
    """Dict of scalar tensors lm_loss, aux_loss, z_loss, loss, and the float min_routing_gap."""
    x = weights["embedding"][tokens]
    aux_loss = torch.zeros((), dtype=torch.float64)
    z_loss = torch.zeros((), dtype=torch.float64)
    min_gap = math.inf
    for layer in range(config["n_layers"]):
        x, aux, z, gap = decoder_layer(x, weights, layer, config, moe_fn)
        aux_loss, z_loss, min_gap = aux_loss + aux, z_loss + z, min(min_gap, gap)
    lm_loss = language_model_loss(x, weights, targets, config)
    return {
        "lm_loss": lm_loss,
        "aux_loss": aux_loss,
        "z_loss": z_loss,
        "loss": lm_loss + aux_loss + z_loss,
        "min_routing_gap": min_gap,
    }


# ----------------------------------------------------------------------------------------------
# Driver


def compute_expected(arrays, metadata):
    """From the inputs file's (arrays, metadata) to the expected file's (arrays, metadata)."""
    config = parse_config(metadata)
    weights = load_weights(arrays, config)
    tokens, targets = load_batch(arrays, config)
    losses = forward_losses(weights, tokens, targets, config)
    losses["loss"].backward()

    out = {k: np.array(losses[k].item(), dtype=np.float64) for k in ("loss", "lm_loss", "aux_loss",
                                                                     "z_loss")}
    for name, weight in weights.items():
        grad = weight.grad if weight.grad is not None else torch.zeros_like(weight)
        out["grad." + name] = grad.detach().numpy().astype(np.float64)
    out_metadata = dict(metadata)
    out_metadata["generator"] = GENERATOR
    out_metadata["torch_version"] = torch.__version__
    out_metadata["min_routing_gap"] = repr(losses["min_routing_gap"])
    return out, out_metadata


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--inputs", required=True, help="inputs.safetensors (weights, batch, config)"
    )
    parser.add_argument("--out", required=True, help="expected.safetensors to write")
    args = parser.parse_args(argv)
    try:
        arrays, metadata = read_safetensors(args.inputs)
        out, out_metadata = compute_expected(arrays, metadata)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_safetensors(args.out, out, out_metadata)
    gap = float(out_metadata["min_routing_gap"])
    print(
        f"loss {out['loss']:.17g} lm_loss {out['lm_loss']:.17g} aux_loss {out['aux_loss']:.17g} "
        f"z_loss {out['z_loss']:.17g} min_routing_gap {gap:.3g} -> {args.out}"
    )
    if gap < ROUTING_GAP_WARNING:
        print(
            f"warning: a token's top-k margin is {gap:.3g}; an fp32 run may route it differently",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
