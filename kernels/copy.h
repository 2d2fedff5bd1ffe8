// copy: dst = src (same dtype, same number of elements, same device).
#pragma once

#include "kernels/base/context.h"

namespace tmt {

void copy(const Context& ctx, const Tensor& dst, const Tensor& src);

}  // namespace tmt
