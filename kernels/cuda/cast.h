#pragma once

#include "kernels/base/context.h"

namespace tmt::cuda {

bool can_cast(DType out, DType in);
void cast(const Context& ctx, const Tensor& out, const Tensor& in);

}  // namespace tmt::cuda
