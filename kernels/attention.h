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
//   q, dq: [B, S, H, Dqk]     k, dk: [B, Sk, Hk, Dqk]    lse: [B, H, S]
//   out, dout: [B, S, H, Dv]  v, dv: [B, Sk, Hk, Dv]
//   Queries may be fewer than keys (S <= Sk; context parallelism's chunks, parallel/
//   context_parallel.h): they are the last S positions of the Sk, query i at position
//   i + Sk - S, and "j <= i" above reads "j <= i + Sk - S" (causal aligned bottom-right), the
//   window likewise.
//   Written: out, lse (fwd); dq, dk, dv (bwd). CPU: one dtype, f32|f64, for all.
//   CUDA: f32|bf16, lse f32. Of three implementations, the first that takes a call runs it:
//     1. bf16: cuDNN's fused SDPA (kernels/cuda/cudnn_attention.h: bf16 products, fp32
//        accumulation and softmax statistics) where cuDNN takes the shape (cudnn-frontend 1.32 asks, for
//        bf16 on Hopper with cuDNN 9.19, head dims that are multiples of 8 up to 256 and, for the
//        backward, S > 1; cuDNN itself decides the rest when it builds the plan);
//     2. bf16 with Dqk = Dv = 64 or 128: the tensor-core kernels (kernels/cuda/flash_attention.h);
//     3. everything else (f32; Dqk, Dv up to 256, equal or not): an fp32 kernel on the CUDA cores.
//   Both bf16 paths need every data pointer 16-byte aligned (arena allocations are). The
//   environment variable TMT_ATTENTION=cudnn|flash|fp32 (read once per process; unset or empty:
//   the order above) forces one path for every bf16 call, fatal for a call it does not take; f32
//   calls always run on the fp32 kernel. It is for benchmarks and tests.
//   Workspace: Context::workspace (workspace.h) must hold attention_fwd_workspace_bytes /
//   attention_bwd_workspace_bytes for the call's shape: cuDNN's graph's workspace on the cuDNN
//   path, D ([B, H, S] f32) on the tensor-core backward, nothing on the fp32 kernel or the CPU.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/base/context.h"

namespace tmt {

// The largest head dimension (Dqk and Dv) the CUDA kernels take; the CPU takes any.
inline constexpr int64_t kCudaAttentionMaxHeadDim = 256;

struct AttentionParams {
  double softmax_scale = 1.0;  // usually 1 / sqrt(Dqk)
  int64_t window = 0;          // 0 = full causal attention
};

void attention_fwd(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                   const Tensor& k, const Tensor& v, const AttentionParams& params);
void attention_bwd(const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                   const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& lse, const AttentionParams& params);

// The sizes of a call, for the workspace queries (asked before the tensors exist).
struct AttentionShape {
  int64_t batch = 0, seq = 0;               // B, S
  int64_t heads = 0, kv_heads = 0;          // H, Hk
  int64_t head_dim_qk = 0, head_dim_v = 0;  // Dqk, Dv
  DType dtype = DType::kF32;                // of q, k, v, out and the gradients
  int64_t kv_seq = 0;                       // Sk; 0: S (as many keys as queries)
  int64_t keys() const { return kv_seq > 0 ? kv_seq : seq; }
};
// The sizes of the call on q [B, S, H, Dqk] and v [B, Sk, Hk, Dv].
AttentionShape attention_shape(const Tensor& q, const Tensor& v);

// Bytes of Context::workspace that attention_fwd / attention_bwd use on `device` at this shape:
// 0 on the CPU. On CUDA the query chooses the call's path as the call will (pointers assumed
// aligned): the cuDNN path's size is its graph's, known once cuDNN has built the graph for the
// shape, so the query builds it (and keeps it for the calls) and needs the GPU, like the call;
// the tensor-core backward's is 4·B·S·H (D); the fp32 kernel takes none.
size_t attention_fwd_workspace_bytes(Device device, const AttentionShape& shape,
                                     const AttentionParams& params);
size_t attention_bwd_workspace_bytes(Device device, const AttentionShape& shape,
                                     const AttentionParams& params);

}  // namespace tmt
