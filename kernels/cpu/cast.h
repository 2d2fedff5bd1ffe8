#pragma once

#include "kernels/base/tensor.h"

namespace tmt::cpu {

void cast(const Tensor& out, const Tensor& in);

}  // namespace tmt::cpu
