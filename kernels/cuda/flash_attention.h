// The tensor-core path of attention on CUDA (kernels/cuda/flash_attention.cu): FlashAttention-2
// style forward and backward on mma.sync with bf16 operands, fp32 accumulators and fp32 softmax
// statistics. Same semantics, shapes and outputs (written, not accumulated) as kernels/attention.h;
// kernels/cuda/attention.cu calls it for the inputs it takes and keeps its fp32 kernel for the
// rest.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "kernels/attention.h"

namespace tmt::cuda {

// Whether these kernels take the op: bf16 tensors with one head dim, 64 or 128, for q, k and v
// (head_dim: q and k's, head_dim_v: v and out's; the kernels need them equal), every data pointer
// 16-byte aligned (arena allocations are; a view that starts inside a row may not be), and a device
// that lets a block have the shared memory the kernels need (at most 102 KiB at Dh 128: sm_80 and
// sm_90 do; sm_86 and sm_89 do only at Dh 64).
bool flash_attention_supported(DType dtype, int64_t head_dim, int64_t head_dim_v,
                               std::initializer_list<const void*> data);

// Arguments as attention_fwd / attention_bwd in kernels/attention.h, already validated there.
void flash_attention_fwd(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                         const Tensor& k, const Tensor& v, const AttentionParams& params);
// Keeps D = Σ dout ⊙ out ([B, H, S] f32) in Context::workspace, which must hold
// flash_attention_bwd_workspace_bytes(B, S, H).
void flash_attention_bwd(const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                         const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& out, const Tensor& lse, const AttentionParams& params);
// The bytes of workspace flash_attention_bwd needs for q [B, S, H, Dh]: D, B·S·H floats.
size_t flash_attention_bwd_workspace_bytes(int64_t batch, int64_t seq, int64_t heads);

}  // namespace tmt::cuda
