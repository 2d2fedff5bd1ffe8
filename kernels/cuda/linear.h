// The CUDA side of kernels/linear.h, through cuBLASLt: f32 (exact fp32 arithmetic, TF32 off) or
// bf16 operands with fp32 accumulation. With bf16 operands dweight may be f32 (fp32 gradient
// accumulation); every other output has the operands' dtype.
#pragma once

#include <cstddef>

#include "kernels/base/context.h"

namespace tmt::cuda {

// cuBLASLt's workspace, which every call takes from Context::workspace: a fixed size, so that
// the algorithm chosen for a shape does not depend on how much the caller happened to provide.
size_t linear_workspace_bytes();

void linear_fwd(const Context& ctx, const Tensor& y, const Tensor& x, const Tensor& weight,
                bool accumulate);
void linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                const Tensor& x, const Tensor& weight, bool accumulate_dx);

}  // namespace tmt::cuda
