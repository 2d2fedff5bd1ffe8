// attention: causal grouped-query softmax attention with an optional sliding window.
//
//   fwd: s[i, j]   = softmax_scale · q[b, i, h, :] · k[b, j, g(h), :]      for visible j
//        lse[b,h,i]= log Σ_j exp(s[i, j])
//        out[b,i,h,:] = Σ_j exp(s[i, j] - lse[b,h,i]) · v[b, j, g(h), :]
//   with g(h) = h / (H / Hk) (query heads share kv heads in groups), and key j visible to query i
//   iff j <= i and (window == 0 or j > i - window): the last `window` positions, the query's own
//   included (Hugging Face Mistral's sliding_window). bwd: with P = exp(s - lse) recomputed, dP =
//   dout · vᵀ, D_i = Σ_d dout[i,d] · out[i,d]:
//        dS = P ⊙ (dP - D),  dq = scale · dS k,  dk = scale · dSᵀ q,  dv = Pᵀ dout
//
//   q, out, dq, dout: [B, S, H, Dh]    k, v, dk, dv: [B, S, Hk, Dh]    lse: [B, H, S]
//   Written: out, lse (fwd); dq, dk, dv (bwd). CPU: one dtype, f32|f64, for all. CUDA: f32|bf16,
//   lse f32; bf16 with Dh 64 or 128 runs on the tensor cores (bf16 products, fp32 accumulation and
//   softmax statistics), everything else on an fp32 kernel on the CUDA cores.
#pragma once

#include <cstdint>

#include "kernels/base/context.h"

namespace tmt {

struct AttentionParams {
  double softmax_scale = 1.0;  // usually 1 / sqrt(Dh)
  int64_t window = 0;          // 0 = full causal attention
};

void attention_fwd(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                   const Tensor& k, const Tensor& v, const AttentionParams& params);
void attention_bwd(const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                   const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& lse, const AttentionParams& params);

}  // namespace tmt
