// The CUDA side of kernels/adamw.h: param, grad, m, v f32; weight (optional) the bf16 copy.
#pragma once

#include "kernels/adamw.h"
#include "kernels/base/context.h"

namespace tmt::cuda {

void adamw_step(const Context& ctx, const Tensor& param, const Tensor& grad, const Tensor& m,
                const Tensor& v, const AdamWParams& params, const Tensor& weight);

}  // namespace tmt::cuda
