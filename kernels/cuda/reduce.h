// The CUDA side of kernels/reduce.h (f32, f64 and bf16 tensors; no CUDA types here).
#pragma once

#include "kernels/base/context.h"

namespace tmt::cuda {

// Synchronizes ctx.stream to return the sum. Calls on several streams at once are not supported
// (one scratch buffer per process).
double sum_squares(const Context& ctx, const Tensor& x);
void scale(const Context& ctx, const Tensor& x, double alpha);
void add(const Context& ctx, const Tensor& y, const Tensor& x, double alpha);

}  // namespace tmt::cuda
