// The CUDA side of kernels/slice.h: dst and src f32 or bf16 (one dtype), sums in fp32.
#pragma once

#include <cstdint>

#include "kernels/base/context.h"
#include "kernels/slice.h"

namespace tmt::cuda {

// dst[r, b.dst_col + j] (+)= Σ_{i < group} src[(r / repeat) · group + i, b.src_col + j]:
// copy_columns is group 1, sum_columns repeat 1.
void move_columns(const Context& ctx, const Tensor& dst, const Tensor& src, const ColumnBlock& b,
                  int64_t repeat, int64_t group, bool accumulate);

}  // namespace tmt::cuda
