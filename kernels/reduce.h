// reduce: small whole-tensor operations the optimizer path needs (gradient norm, clipping,
// accumulation).
//
//   sum_squares: returns sum_i x[i]^2, accumulated in double (for the global gradient norm)
//   scale:       x[i] *= alpha                                   (in place)
//   add:         y[i] += alpha * x[i]                            (accumulated)
//
//   x, y: any shape (treated as flat), f32|f64 (CUDA also bf16, computed in fp32); add needs equal
//         numel and dtype.
// sum_squares is deterministic: the CPU reference sums a fixed partition of x and adds the partial
// sums in order, so the result does not depend on the number of threads.
// Workspace: on CUDA sum_squares keeps its per-block partial sums in sum_squares_workspace_bytes,
// which the caller provides through Context::workspace (workspace.h); scale and add need none.
#pragma once

#include <cstddef>

#include "kernels/base/context.h"

namespace tmt {

double sum_squares(const Context& ctx, const Tensor& x);
void scale(const Context& ctx, const Tensor& x, double alpha);
void add(const Context& ctx, const Tensor& y, const Tensor& x, double alpha = 1.0);

// Bytes of Context::workspace that sum_squares uses on `device`, whatever the size of x: on CUDA
// its 512 partial sums (f64, 4 KiB), 0 on the CPU.
size_t sum_squares_workspace_bytes(Device device);

}  // namespace tmt
