// attention: causal grouped-query softmax attention with an optional sliding window; the value
// head dim Dv may differ from the query/key head dim Dqk (multi-head latent attention: 192 / 128).
//
//   fwd: s[i, j]   = softmax_scale · q[b, i, h, :] · k[b, j, g(h), :]      for visible j
//        lse[b,h,i]= log Σ_j exp(s[i, j])                                 (natural log)
//        out[b,i,h,:] = Σ_j exp(s[i, j] - lse[b,h,i]) · v[b, j, g(h), :]
//   with g(h) = h / (H / Hk) (query heads share kv heads in groups), and key j visible to query i
//   iff j <= i and (window == 0 or j > i - window): the last `window` positions, the query's own
//   included (Hugging Face Mistral's sliding_window).
//   bwd: with P = exp(s - lse) recomputed, dP = dout · vᵀ, D_i = Σ_d dout[i,d] · out[i,d]:
//        dS = P ⊙ (dP - D),  dq = scale · dS k,  dk = scale · dSᵀ q,  dv = Pᵀ dout
//
//   q, dq: [B, S, H, Dqk]     k, dk: [B, S, Hk, Dqk]     lse: [B, H, S]
//   out, dout: [B, S, H, Dv]  v, dv: [B, S, Hk, Dv]
//   Written: out, lse (fwd); dq, dk, dv (bwd). CPU: one dtype, f32|f64, for all. CUDA: f32|bf16,
//   lse f32; bf16 with Dqk = Dv = 64 or 128 runs on the tensor cores (bf16 products, fp32
//   accumulation and softmax statistics), everything else (Dqk, Dv up to 256, equal or not) on an
//   fp32 kernel on the CUDA cores.
//   Workspace: the tensor-core backward keeps D ([B, H, S] f32) in attention_bwd_workspace_bytes,
//   which the caller provides through Context::workspace (workspace.h); the forward needs none.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/base/context.h"

namespace tmt {

struct AttentionParams {
  double softmax_scale = 1.0;  // usually 1 / sqrt(Dqk)
  int64_t window = 0;          // 0 = full causal attention
};

void attention_fwd(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                   const Tensor& k, const Tensor& v, const AttentionParams& params);
void attention_bwd(const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                   const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& lse, const AttentionParams& params);

// Bytes of Context::workspace that attention_bwd uses on `device` for q [B, S, H, Dqk]: on CUDA
// 4·B·S·H (D, on the tensor-core path; the fp32 path takes none), 0 on the CPU.
size_t attention_bwd_workspace_bytes(Device device, int64_t batch, int64_t seq, int64_t heads);

}  // namespace tmt
