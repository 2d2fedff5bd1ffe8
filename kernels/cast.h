// cast: out = in converted to out's dtype, element by element (round to nearest even).
//
//   out: [...] any floating dtype   (written)
//   in:  [...] same shape, any floating dtype, same device
// CPU: every pair of floating dtypes. CUDA: f32 <-> bf16 (the mixed-precision pairs).
#pragma once

#include "kernels/base/context.h"

namespace tmt {

void cast(const Context& ctx, const Tensor& out, const Tensor& in);

}  // namespace tmt
