// The CUDA side of kernels/attention.h: a flash-attention-style kernel of our own, q/k/v/out and
// their gradients f32|bf16, lse always f32, all arithmetic in fp32. Head dims up to 256.
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

}  // namespace tmt::cuda
