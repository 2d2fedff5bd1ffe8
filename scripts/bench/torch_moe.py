#!/usr/bin/env python3
"""The PyTorch reference for the GPU benchmark: the same Mixtral-shaped MoE as recipes/bench-1gpu.yaml
(d_model 2048, 8 layers, 16 query / 4 kv heads of 128, 8 experts top-2 with FFN 5632, vocab 32000,
sequences of 4096), trained in bf16 with fp32 master weights (torch.autocast over fp32 parameters),
AdamW (fused), SDPA attention (causal, GQA), experts through torch._grouped_mm when this PyTorch has
it (else one matmul per expert), the model under torch.compile; 8 micro-batches of one sequence
per optimizer step, as the recipe's global_batch 8 / micro_batch 1 (--accum, --batch).

Prints tokens/s, achieved TFLOP/s and MFU with tramontane's FLOP count: 6 x active matmul
parameters x tokens + attention (12 x layers x heads x head_dim x mean keys per query per token),
against 989 TFLOP/s (H100 SXM bf16 dense).

  python3 scripts/bench/torch_moe.py [--steps 10] [--warmup 3] [--accum 8] [--no-compile]
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F

PEAK_TFLOPS = 989.0


class Config:
    def __init__(self, a):
        self.vocab, self.d, self.layers = a.vocab, a.d_model, a.layers
        self.heads, self.kv_heads, self.head_dim = a.heads, a.kv_heads, a.head_dim
        self.experts, self.top_k, self.ffn = a.experts, a.top_k, a.ffn
        self.seq, self.eps, self.theta = a.seq, 1e-5, 1e6


def rope_tables(cfg, device):
    inv = 1.0 / (cfg.theta ** (torch.arange(0, cfg.head_dim, 2, device=device).float() / cfg.head_dim))
    angles = torch.outer(torch.arange(cfg.seq, device=device).float(), inv)  # [S, Dh/2]
    return angles.cos(), angles.sin()


def rope(x, cos, sin):
    """x [B, S, H, Dh], rotating pairs (2i, 2i+1) like tramontane's kernel."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2)


class Block(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, h, hk, dh, e, f = cfg.d, cfg.heads, cfg.kv_heads, cfg.head_dim, cfg.experts, cfg.ffn
        self.cfg = cfg
        self.attn_norm = torch.nn.Parameter(torch.ones(d))
        self.wqkv = torch.nn.Parameter(torch.randn((h + 2 * hk) * dh, d) * 0.02)
        self.wo = torch.nn.Parameter(torch.randn(d, h * dh) * 0.02)
        self.ffn_norm = torch.nn.Parameter(torch.ones(d))
        self.router = torch.nn.Parameter(torch.randn(e, d) * 0.02)
        self.w13 = torch.nn.Parameter(torch.randn(e, 2 * f, d) * 0.02)
        self.w2 = torch.nn.Parameter(torch.randn(e, d, f) * 0.02)

    def attention(self, x, cos, sin):
        cfg = self.cfg
        b, s, _ = x.shape
        h = F.rms_norm(x, (cfg.d,), self.attn_norm, cfg.eps)
        qkv = h @ self.wqkv.t()
        q, k, v = qkv.split([cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim,
                             cfg.kv_heads * cfg.head_dim], dim=-1)
        q = rope(q.view(b, s, cfg.heads, cfg.head_dim), cos, sin)
        k = rope(k.view(b, s, cfg.kv_heads, cfg.head_dim), cos, sin)
        v = v.view(b, s, cfg.kv_heads, cfg.head_dim)
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=True, enable_gqa=True)
        return x + o.transpose(1, 2).reshape(b, s, -1) @ self.wo.t()

    def moe(self, x):
        cfg = self.cfg
        b, s, d = x.shape
        h = F.rms_norm(x, (d,), self.ffn_norm, cfg.eps).view(-1, d)
        probs = torch.softmax((h @ self.router.t()).float(), dim=-1)
        w, idx = probs.topk(cfg.top_k, dim=-1)
        w = (w / w.sum(-1, keepdim=True)).to(h.dtype)
        flat = idx.view(-1)
        order = flat.argsort(stable=True)
        token = order // cfg.top_k
        counts = torch.bincount(flat, minlength=cfg.experts)
        # autocast leaves the norm's output in fp32; the grouped GEMM takes bf16 only
        xs = h[token].to(torch.bfloat16)
        if hasattr(torch, "_grouped_mm"):
            offs = counts.cumsum(0).to(torch.int32)
            gu = torch._grouped_mm(xs, self.w13.transpose(1, 2).to(torch.bfloat16), offs=offs)
            g, u = gu.chunk(2, dim=-1)
            ys = torch._grouped_mm((F.silu(g) * u).to(torch.bfloat16),
                                   self.w2.transpose(1, 2).to(torch.bfloat16), offs=offs)
        else:
            outs, start = [], 0
            for e, n in enumerate(counts.tolist()):
                gu = xs[start:start + n] @ self.w13[e].t()
                g, u = gu.chunk(2, dim=-1)
                outs.append((F.silu(g) * u) @ self.w2[e].t())
                start += n
            ys = torch.cat(outs)
        y = torch.zeros_like(h).index_add_(0, token, (ys * w.view(-1)[order, None]).to(h.dtype))
        return x + y.view(b, s, d)

    def forward(self, x, cos, sin):
        return self.moe(self.attention(x, cos, sin))


class Model(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embedding = torch.nn.Parameter(torch.randn(cfg.vocab, cfg.d) * 0.02)
        self.blocks = torch.nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.final_norm = torch.nn.Parameter(torch.ones(cfg.d))
        self.head = torch.nn.Parameter(torch.randn(cfg.vocab, cfg.d) * 0.02)

    def forward(self, tokens, targets, cos, sin):
        x = F.embedding(tokens, self.embedding)
        for blk in self.blocks:
            x = blk(x, cos, sin)
        logits = F.rms_norm(x, (self.cfg.d,), self.final_norm, self.cfg.eps) @ self.head.t()
        return F.cross_entropy(logits.float().view(-1, self.cfg.vocab), targets.view(-1))


def flops_per_token(cfg):
    d, h, hk, dh = cfg.d, cfg.heads, cfg.kv_heads, cfg.head_dim
    attn_params = d * (h + 2 * hk) * dh + h * dh * d
    expert_params = cfg.top_k * 3 * d * cfg.ffn + cfg.experts * d
    active = cfg.layers * (attn_params + expert_params) + cfg.vocab * d  # head (embedding is a lookup)
    mean_keys = (cfg.seq + 1) / 2
    return 6 * active + 12 * cfg.layers * h * dh * mean_keys


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--d-model", type=int, default=2048)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--ffn", type=int, default=5632)
    p.add_argument("--seq", type=int, default=4096)
    p.add_argument("--batch", type=int, default=1, help="sequences per micro-batch")
    p.add_argument("--accum", type=int, default=8,
                   help="micro-batches per optimizer step (bench-1gpu: global_batch 8 of 1)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-compile", action="store_true")
    a = p.parse_args()
    cfg = Config(a)
    device = "cuda"
    torch.manual_seed(0)
    model = Model(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=True)
    cos, sin = rope_tables(cfg, device)

    # The model is compiled; backward (through the compiled graph's own backward), gradient
    # accumulation and the fused AdamW step run eagerly around it, as in a training loop.
    forward = model if a.no_compile else torch.compile(model)

    def step(tokens, targets):
        total = torch.zeros((), device=device)
        for _ in range(a.accum):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = forward(tokens, targets, cos, sin) / a.accum
            loss.backward()
            total += loss.detach()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return total

    tokens = torch.randint(0, cfg.vocab, (a.batch, cfg.seq), device=device)
    targets = torch.randint(0, cfg.vocab, (a.batch, cfg.seq), device=device)
    for _ in range(a.warmup):
        step(tokens, targets)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step(tokens, targets)
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / a.steps
    tok_s = a.accum * a.batch * cfg.seq / dt
    tflops = tok_s * flops_per_token(cfg) / 1e12
    params = sum(x.numel() for x in model.parameters())
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, "
          f"{'torch.compile' if not a.no_compile else 'eager'}, "
          f"grouped_mm {'yes' if hasattr(torch, '_grouped_mm') else 'no (per-expert matmuls)'}")
    print(f"{params / 1e9:.2f}B parameters, {a.accum} x {a.batch} x {cfg.seq} tokens per step, "
          f"loss {loss.item():.4f} (random tokens: ~ln V = {math.log(cfg.vocab):.2f})")
    print(f"step {dt * 1e3:.1f} ms | {tok_s:,.0f} tokens/s | {tflops:.1f} TFLOP/s | "
          f"MFU {100 * tflops / PEAK_TFLOPS:.1f}% | peak memory "
          f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
