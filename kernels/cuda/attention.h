// The CUDA side of kernels/attention.h: q/k/v/out and their gradients f32|bf16, lse always f32,
// head dims up to 256. kernels/cuda/attention.cu chooses a path per call:
//   kCudnn  bf16 where cuDNN's fused SDPA takes the shape (kernels/cuda/cudnn_attention.h);
//   kFlash  bf16 with Dqk = Dv = 64 or 128 on our tensor-core kernels
//           (kernels/cuda/flash_attention.h: bf16 operands, fp32 accumulators and statistics);
//   kFp32   every other case, on a flash-attention-style fp32 kernel on the CUDA cores
//           (kernels/cuda/attention.cu).
// in that order of preference, or the one TMT_ATTENTION=cudnn|flash|fp32 forces
// (kernels/attention.h).
#pragma once

#include <initializer_list>

#include "kernels/attention.h"
#include "kernels/cuda/cudnn_attention.h"

namespace tmt::cuda {

// The largest head dimension the kernels take.
inline constexpr int64_t kAttentionMaxHeadDim = kCudaAttentionMaxHeadDim;

enum class AttentionPath { kCudnn, kFlash, kFp32 };

// The path a call of `pass` at this shape takes, given its data pointers (empty: a workspace query,
// pointers assumed 16-byte aligned). May build the cuDNN graph for the shape (needs the GPU). Fatal
// when TMT_ATTENTION forces a path that does not take the call, or holds anything else.
AttentionPath attention_path(AttentionPass pass, const AttentionShape& shape,
                             const AttentionParams& params,
                             std::initializer_list<const void*> data);
const char* attention_path_name(AttentionPath path);  // "cudnn", "flash", "fp32"

void attention_fwd(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                   const Tensor& k, const Tensor& v, const AttentionParams& params);
void attention_bwd(const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                   const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& lse, const AttentionParams& params);

// The workspace of the path attention_path chooses for a call of this shape (kernels/attention.h).
size_t attention_fwd_workspace_bytes(const AttentionShape& shape, const AttentionParams& params);
size_t attention_bwd_workspace_bytes(const AttentionShape& shape, const AttentionParams& params);

}  // namespace tmt::cuda
