#pragma once

#include "kernels/adamw.h"
#include "kernels/base/tensor.h"

namespace tmt::cpu {

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                const AdamWParams& params, const Tensor& weight);

}  // namespace tmt::cpu
