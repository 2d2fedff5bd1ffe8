#!/usr/bin/python3
"""Self-check of mixtral_reference.py, without the C++ side.

For each of a few random micro configurations (2 layers: layer 0 dense, layer 1 MoE with E=4
experts, GQA H=4 Hk=2, ragged sizes, some ignored targets), it writes inputs.safetensors into a
temporary directory, runs the reference's command line on it, and checks:
  (a) gradients against central finite differences of the float64 total loss on random elements of
      every weight (relative error by norm over the sampled elements < 1e-6);
  (b) a second, independently written MoE block -- every expert computed for every token, combined
      with a dense [T, E] gate matrix built from ranks instead of torch.sort/topk -- gives the same
      loss parts and gradients (relative error by norm < 1e-12);
  (c) the files round-trip: inputs read back bit-exactly, the expected file's tensors equal an
      in-process computation bit-exactly, metadata carried over with generator/torch_version;
  (d) an independently written attention (per-query loops, RoPE as complex rotation of the pairs
      (z[i], z[i + Dh/2])) agrees with the reference's attention, and a window >= S equals no
      window.
Exit status 0 when every check passes, 1 otherwise.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mixtral_reference as ref  # noqa: E402
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

FD_STEP = 1e-6
FD_SAMPLES_PER_WEIGHT = 4
FD_TOLERANCE = 1e-6
SECOND_FORM_TOLERANCE = 1e-12
ATTENTION_TOLERANCE = 1e-12
MIN_ROUTING_GAP = 1e-4  # far above FD_STEP-induced changes, so no selection flips during (a)


def base_config():
    return {
        "vocab_size": 11, "d_model": 12, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2,
        "head_dim": 6, "ffn_hidden": 10, "norm_eps": 1e-5, "rope_theta": 10000.0,
        "sliding_window": None, "tie_embeddings": False, "seq_len": 7, "batch": 2,
        "moe": {
            "n_experts": 4, "top_k": 2, "expert_ffn_hidden": 6, "n_shared_experts": 1,
            "shared_expert_ffn_hidden": 5, "moe_layers": [1], "score": "softmax",
            "aux_loss_coeff": 0.1, "z_loss_coeff": 0.02,
        },
    }


def run_configs():
    """(name, config): the plain case, a sliding window with tied embeddings, sigmoid top-3."""
    plain = base_config()
    window = base_config()
    window["sliding_window"] = 3
    window["tie_embeddings"] = True
    sigmoid = base_config()
    sigmoid["sliding_window"] = 4
    sigmoid["moe"].update(score="sigmoid", top_k=3, n_shared_experts=2, shared_expert_ffn_hidden=3)
    return [("full-attn untied softmax top2", plain), ("window=3 tied softmax top2", window),
            ("window=4 sigmoid top3 2 shared", sigmoid)]


def random_inputs(config, generator):
    """Random weights (float32), tokens and targets (int32, some ignored) for a config."""
    arrays = {}
    for name, shape in ref.weight_shapes(config).items():
        if name.endswith("norm"):
            values = 1.0 + 0.2 * torch.randn(shape, generator=generator, dtype=torch.float64)
        else:
            fan_in = shape[-1]
            values = torch.randn(shape, generator=generator, dtype=torch.float64)
            values /= math.sqrt(fan_in)
            if name == "embedding" or name.endswith("router"):
                values *= 2.0
        arrays[name] = values.numpy().astype(np.float32)
    B, S, V = config["batch"], config["seq_len"], config["vocab_size"]
    arrays["tokens"] = torch.randint(0, V, (B, S), generator=generator).numpy().astype(np.int32)
    targets = torch.randint(0, V, (B, S), generator=generator)
    targets[0, -1] = -1
    targets[1, 2] = -100
    arrays["targets"] = targets.numpy().astype(np.int32)
    return arrays, {"config": json.dumps(config)}


def rel_err(a, b):
    """||a - b|| / max(||b||, tiny); both are tensors or arrays."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).norm() / max(float(b.norm()), 1e-300)) if b.norm() > 0 else float(
        (a - b).norm())


# ----------------------------------------------------------------------------------------------
# (b) second formulation of the MoE block


def moe_block_dense(h, weights, prefix, config):
    """Every expert on every token, weighted by a dense gate G [T, E] (zero off the top-k)."""
    moe = config["moe"]
    E, K = moe["n_experts"], moe["top_k"]
    logits = torch.einsum("td,ed->te", h, weights[prefix + "moe.router"])
    if moe["score"] == "softmax":
        probs = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
        probs = probs / probs.sum(dim=1, keepdim=True)
    else:
        probs = 1.0 / (1.0 + torch.exp(-logits))
    # rank[t, e] = #{e' : p[t, e'] > p[t, e]} + #{e' < e : p[t, e'] == p[t, e]}
    p_col, p_row = probs.detach()[:, :, None], probs.detach()[:, None, :]
    lower = torch.arange(E)[None, :] < torch.arange(E)[:, None]  # [e, e']: e' < e
    rank = ((p_row > p_col) | ((p_row == p_col) & lower[None])).sum(dim=2)
    chosen = (rank < K).to(torch.float64)
    gate = probs * chosen
    gate = gate / gate.sum(dim=1, keepdim=True)

    w13, w2 = weights[prefix + "moe.w13"], weights[prefix + "moe.w2"]
    Fe = w13.shape[1] // 2
    gate_proj = torch.einsum("td,efd->tef", h, w13[:, :Fe])
    up_proj = torch.einsum("td,efd->tef", h, w13[:, Fe:])
    expert_out = torch.einsum("tef,edf->ted", gate_proj * torch.sigmoid(gate_proj) * up_proj, w2)
    y = torch.einsum("te,ted->td", gate, expert_out)
    if moe["n_shared_experts"] > 0:
        ws13, ws2 = weights[prefix + "shared.w13"], weights[prefix + "shared.w2"]
        Fsh = ws2.shape[1]
        g, u = h @ ws13[:Fsh].T, h @ ws13[Fsh:].T
        y = y + (g * torch.sigmoid(g) * u) @ ws2.T

    routed_fraction = chosen.sum(dim=0) / (h.shape[0] * K)
    aux = moe["aux_loss_coeff"] * E * torch.dot(routed_fraction, probs.sum(dim=0) / h.shape[0])
    lse = logits.max(dim=1).values + torch.log(
        torch.exp(logits - logits.max(dim=1, keepdim=True).values).sum(dim=1))
    z = moe["z_loss_coeff"] * (lse * lse).sum() / h.shape[0]
    return y, aux, z, math.inf


# ----------------------------------------------------------------------------------------------
# (d) second formulation of attention


def attention_loops(h, wq, wk, wv, wo, config):
    """Per-(batch, head, query) loops; RoPE multiplies z[:half] + i z[half:] by e^(i angle)."""
    B, S, _ = h.shape
    H, Hk, Dh = config["n_heads"], config["n_kv_heads"], config["head_dim"]
    W = config["sliding_window"]
    half = Dh // 2
    freqs = torch.tensor([config["rope_theta"] ** (-2.0 * i / Dh) for i in range(half)],
                         dtype=torch.float64)

    def rope(vec, pos):
        rotation = torch.polar(torch.ones(half, dtype=torch.float64), pos * freqs)
        z = torch.complex(vec[:half], vec[half:]) * rotation
        return torch.cat([z.real, z.imag])

    out = torch.zeros(B, S, H * Dh, dtype=torch.float64)
    for b in range(B):
        for head in range(H):
            kv = head // (H // Hk)
            keys = [rope(h[b, j] @ wk[kv * Dh:(kv + 1) * Dh].T, j) for j in range(S)]
            values = [h[b, j] @ wv[kv * Dh:(kv + 1) * Dh].T for j in range(S)]
            for i in range(S):
                query = rope(h[b, i] @ wq[head * Dh:(head + 1) * Dh].T, i)
                visible = [j for j in range(i + 1) if W is None or j > i - W]
                scores = torch.stack([query.dot(keys[j]) for j in visible]) / math.sqrt(Dh)
                probs = torch.softmax(scores, dim=0)
                out[b, i, head * Dh:(head + 1) * Dh] = sum(p * values[j] for p, j in
                                                            zip(probs, visible))
    return out @ wo.T


# ----------------------------------------------------------------------------------------------
# Checks


def check_finite_differences(weights, tokens, targets, config, expected, generator):
    """(a): returns (worst rel err by norm, report lines)."""
    lines, worst = [], 0.0
    for name, weight in weights.items():
        flat = weight.detach().view(-1)
        picks = torch.randperm(flat.numel(), generator=generator)[:FD_SAMPLES_PER_WEIGHT]
        analytic = torch.tensor(expected["grad." + name]).view(-1)[picks]
        numeric = torch.empty_like(analytic)
        for n, index in enumerate(picks.tolist()):
            original = flat[index].item()
            with torch.no_grad():
                flat[index] = original + FD_STEP
                plus = ref.forward_losses(weights, tokens, targets, config)["loss"].item()
                flat[index] = original - FD_STEP
                minus = ref.forward_losses(weights, tokens, targets, config)["loss"].item()
                flat[index] = original
            numeric[n] = (plus - minus) / (2 * FD_STEP)
        err = rel_err(analytic, numeric)
        worst = max(worst, err)
        lines.append(f"    {name:22s} |g|={float(analytic.norm()):.3e} rel_err={err:.2e}")
    return worst, lines


def check_second_formulation(weights, tokens, targets, config, expected):
    """(b): the dense-gate MoE; returns worst rel err over loss parts and all gradients."""
    fresh = {n: w.detach().clone().requires_grad_(True) for n, w in weights.items()}
    losses = ref.forward_losses(fresh, tokens, targets, config, moe_fn=moe_block_dense)
    losses["loss"].backward()
    errs = {k: rel_err(losses[k].detach(), expected[k]) for k in ("loss", "lm_loss", "aux_loss",
                                                                   "z_loss")}
    grad_err = max(rel_err(w.grad, expected["grad." + n]) for n, w in fresh.items())
    return max(max(errs.values()), grad_err), errs, grad_err


def check_attention(weights, tokens, config):
    """(d): returns (rel err loops vs reference, rel err window>=S vs none)."""
    with torch.no_grad():
        x = weights["embedding"][tokens]
        p = "layers.0."
        h = ref.rms_norm(x, weights[p + "attn.norm"], config["norm_eps"])
        args = [weights[p + n] for n in ("attn.wq", "attn.wk", "attn.wv", "attn.wo")]
        err_loops = rel_err(attention_loops(h, *args, config), ref.attention(h, *args, config))
        wide = dict(config, sliding_window=config["seq_len"])
        none = dict(config, sliding_window=None)
        err_wide = rel_err(ref.attention(h, *args, wide), ref.attention(h, *args, none))
    return err_loops, err_wide


def check_round_trip(inputs_path, arrays, metadata, out_path):
    """(c): returns a list of failure strings (empty when fine) and the expected arrays."""
    failures = []
    read_arrays, read_metadata = read_safetensors(inputs_path)
    if read_metadata != metadata or set(read_arrays) != set(arrays):
        failures.append("inputs metadata or names changed")
    for name, array in arrays.items():
        if read_arrays[name].dtype != array.dtype or not np.array_equal(read_arrays[name], array):
            failures.append(f"inputs '{name}' changed")
    expected, expected_metadata = read_safetensors(out_path)
    in_process, in_process_metadata = ref.compute_expected(read_arrays, read_metadata)
    if set(expected) != set(in_process):
        failures.append("expected names differ from an in-process run")
    for name, array in in_process.items():
        if expected[name].dtype != np.float64 or not np.array_equal(expected[name], array):
            failures.append(f"expected '{name}' differs from an in-process run")
    for key, value in metadata.items():
        if expected_metadata.get(key) != value:
            failures.append(f"metadata '{key}' not carried into expected")
    if (expected_metadata.get("generator") != ref.GENERATOR
            or "torch_version" not in expected_metadata):
        failures.append("generator/torch_version missing")
    with open(out_path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
    if header_len % 8 != 0:
        failures.append(f"header length {header_len} not 8-aligned")
    return failures, expected, expected_metadata


def run_one(name, config, seed, workdir):
    generator = torch.Generator().manual_seed(seed)
    arrays, metadata = random_inputs(config, generator)
    inputs_path = os.path.join(workdir, "inputs.safetensors")
    out_path = os.path.join(workdir, "expected.safetensors")
    write_safetensors(inputs_path, arrays, metadata)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mixtral_reference.py")
    cli = subprocess.run([sys.executable, script, "--inputs", inputs_path, "--out", out_path],
                         capture_output=True, text=True, check=False)
    print(f"== {name} (seed {seed})")
    print(f"  cli rc={cli.returncode}: {cli.stdout.strip()} {cli.stderr.strip()}")
    if cli.returncode != 0:
        return False

    failures, expected, expected_metadata = check_round_trip(inputs_path, arrays, metadata,
                                                             out_path)
    gap = float(expected_metadata["min_routing_gap"])
    if gap < MIN_ROUTING_GAP:
        failures.append(f"min routing gap {gap:.2e} < {MIN_ROUTING_GAP}: pick another seed")
    weights = ref.load_weights(arrays, config)
    tokens, targets = ref.load_batch(arrays, config)

    fd_worst, fd_lines = check_finite_differences(weights, tokens, targets, config, expected,
                                                  generator)
    second_worst, second_losses, second_grads = check_second_formulation(weights, tokens, targets,
                                                                         config, expected)
    att_loops, att_wide = check_attention(weights, tokens, config)

    print(f"  (c) round trip: {'ok' if not failures else failures}; min routing gap {gap:.3e}")
    print(f"  (a) finite differences (step {FD_STEP}, {FD_SAMPLES_PER_WEIGHT} elements per "
          "weight): "
          f"worst rel err {fd_worst:.2e} (tol {FD_TOLERANCE})")
    print("\n".join(fd_lines))
    print("  (b) dense-gate MoE: loss parts rel err "
          + ", ".join(f"{k} {v:.1e}" for k, v in second_losses.items())
          + f"; worst grad rel err {second_grads:.1e} (tol {SECOND_FORM_TOLERANCE})")
    print(f"  (d) loop attention rel err {att_loops:.1e}; window=S vs none {att_wide:.1e} "
          f"(tol {ATTENTION_TOLERANCE})")
    ok = (not failures and fd_worst < FD_TOLERANCE and second_worst < SECOND_FORM_TOLERANCE
          and att_loops < ATTENTION_TOLERANCE and att_wide < ATTENTION_TOLERANCE)
    print(f"  -> {'PASS' if ok else 'FAIL'}")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1234, help="base seed (run i uses seed + i)")
    parser.add_argument("--keep", metavar="DIR", help="write the files here instead of a temp dir")
    args = parser.parse_args(argv)
    results = []
    for i, (name, config) in enumerate(run_configs()):
        if args.keep:
            workdir = os.path.join(args.keep, f"run{i}")
            os.makedirs(workdir, exist_ok=True)
            results.append(run_one(name, config, args.seed + i, workdir))
        else:
            with tempfile.TemporaryDirectory() as workdir:
                results.append(run_one(name, config, args.seed + i, workdir))
    print(f"selfcheck: {sum(results)}/{len(results)} runs passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
