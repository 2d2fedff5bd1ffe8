// copy: dst = src (same dtype, same number of elements, same device). On CUDA: one
// cudaMemcpyAsync on ctx.stream, any dtype.
#pragma once

#include "kernels/base/context.h"

namespace tmt {

void copy(const Context& ctx, const Tensor& dst, const Tensor& src);

}  // namespace tmt
