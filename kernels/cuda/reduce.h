// The CUDA side of kernels/reduce.h (f32, f64 and bf16 tensors; no CUDA types here).
#pragma once

#include <cstddef>

#include "kernels/base/context.h"

namespace tmt::cuda {

// Synchronizes ctx.stream to return the sum. Its partial sums go into Context::workspace, which
// must hold sum_squares_workspace_bytes().
double sum_squares(const Context& ctx, const Tensor& x);
// sum_squares' workspace: its partial sums.
size_t sum_squares_workspace_bytes();
void scale(const Context& ctx, const Tensor& x, double alpha);
void add(const Context& ctx, const Tensor& y, const Tensor& x, double alpha);

}  // namespace tmt::cuda
