// The CUDA side of kernels/rmsnorm.h: x, y, weight f32 or bf16 (one dtype); rstd f32|f64.
#pragma once

#include "kernels/base/context.h"

namespace tmt::cuda {

void rmsnorm_fwd(const Context& ctx, const Tensor& y, const Tensor& rstd, const Tensor& x,
                 const Tensor& weight, double eps);
void rmsnorm_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                 const Tensor& x, const Tensor& weight, const Tensor& rstd);

}  // namespace tmt::cuda
