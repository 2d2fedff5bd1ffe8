#pragma once

#include "kernels/base/tensor.h"

namespace tmt::cpu {

double sum_squares(const Tensor& x);
void scale(const Tensor& x, double alpha);
void add(const Tensor& y, const Tensor& x, double alpha);

}  // namespace tmt::cpu
