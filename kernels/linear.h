// linear: y = x @ W^T, no bias; W in PyTorch layout [out, in].
//
//   fwd: y[t, n]  = sum_k x[t, k] * weight[n, k]        (written, or += with accumulate)
//   bwd: dx[t, k] = sum_n dy[t, n] * weight[n, k]       (written, or += with accumulate_dx)
//        dweight[n, k] += sum_t dy[t, n] * x[t, k]      (always accumulated)
//
//   x, dx:           [T, K] f32|f64
//   weight, dweight: [N, K] same dtype
//   y, dy:           [T, N] same dtype
// CUDA (cuBLASLt): f32 with exact fp32 arithmetic (no TF32), or bf16 with fp32 accumulation;
// with bf16 operands y (forward) and dweight may also be f32.
// `accumulate` turns the forward into a residual add (y += x @ W^T). In the backward either output
// may be skipped by passing an empty Tensor{} (no dx for a first layer, no dweight for a frozen
// one). The CPU reference is one cblas_{s,d}gemm a product. No output may alias an input.
// Workspace: cuBLASLt's scratch for the algorithms it picks, linear_workspace_bytes (32 MiB on
// CUDA, 0 on the CPU), which the caller provides through Context::workspace (workspace.h).
#pragma once

#include <cstddef>

#include "kernels/base/context.h"

namespace tmt {

void linear_fwd(const Context& ctx, const Tensor& y, const Tensor& x, const Tensor& weight,
                bool accumulate = false);
void linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                const Tensor& x, const Tensor& weight, bool accumulate_dx = false);

// Bytes of Context::workspace that linear_fwd and linear_bwd use on `device`, whatever the shapes.
size_t linear_workspace_bytes(Device device);

}  // namespace tmt
