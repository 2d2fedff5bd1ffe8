#pragma once

#include "kernels/base/tensor.h"

namespace tmt::cpu {

void rmsnorm_fwd(const Tensor& y, const Tensor& rstd, const Tensor& x, const Tensor& weight,
                 double eps);
void rmsnorm_bwd(const Tensor& dx, const Tensor& dweight, const Tensor& dy, const Tensor& x,
                 const Tensor& weight, const Tensor& rstd);

}  // namespace tmt::cpu
