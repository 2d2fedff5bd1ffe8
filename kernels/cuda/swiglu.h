// The CUDA side of kernels/swiglu.h: gu, h, dh, dgu f32 or bf16 (one dtype).
#pragma once

#include "kernels/base/context.h"

namespace tmt::cuda {

void swiglu_fwd(const Context& ctx, const Tensor& h, const Tensor& gu);
void swiglu_bwd(const Context& ctx, const Tensor& dgu, const Tensor& dh, const Tensor& gu);

}  // namespace tmt::cuda
