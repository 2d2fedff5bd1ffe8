#pragma once

#include "kernels/base/tensor.h"

namespace tmt::cpu {

void swiglu_fwd(const Tensor& h, const Tensor& gu);
void swiglu_bwd(const Tensor& dgu, const Tensor& dh, const Tensor& gu);

}  // namespace tmt::cpu
