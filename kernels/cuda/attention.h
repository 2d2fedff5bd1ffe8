// The CUDA side of kernels/attention.h: q/k/v/out and their gradients f32|bf16, lse always f32,
// head dims up to 256. bf16 with Dh 64 or 128 runs on the tensor cores (kernels/cuda/
// flash_attention.h: bf16 operands, fp32 accumulators and softmax statistics); every other case
// on a flash-attention-style fp32 kernel on the CUDA cores (kernels/cuda/attention.cu).
#pragma once

#include "kernels/attention.h"

namespace tmt::cuda {

// The largest head dimension the kernels take.
inline constexpr int64_t kAttentionMaxHeadDim = 256;

void attention_fwd(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                   const Tensor& k, const Tensor& v, const AttentionParams& params);
void attention_bwd(const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                   const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& lse, const AttentionParams& params);

// attention_bwd's workspace for q [B, S, H, Dh]: what the tensor-core path takes (the fp32 path
// takes none).
size_t attention_bwd_workspace_bytes(int64_t batch, int64_t seq, int64_t heads);

}  // namespace tmt::cuda
