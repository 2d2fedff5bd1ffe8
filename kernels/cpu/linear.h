#pragma once

#include "kernels/base/tensor.h"

namespace tmt::cpu {

void linear_fwd(const Tensor& y, const Tensor& x, const Tensor& weight, bool accumulate);
// dx or dweight may be undefined (Tensor{}): that product is skipped.
void linear_bwd(const Tensor& dx, const Tensor& dweight, const Tensor& dy, const Tensor& x,
                const Tensor& weight, bool accumulate_dx);

}  // namespace tmt::cpu
