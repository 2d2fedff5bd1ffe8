// slice: a block of columns copied between row-major matrices, with rows repeated or summed in
// groups — the head-strided moves of multi-head latent attention (a query head's RoPE part, one
// key part broadcast to every head, and the backward's sum over the heads).
//
//   copy_columns: dst[r, b.dst_col + j]  =  src[r / repeat, b.src_col + j]
//   sum_columns:  dst[r, b.dst_col + j]  =  Σ_{i < group} src[r · group + i, b.src_col + j]
//   for r in [0, R), j in [0, b.width); with accumulate, += instead of =.
//
//   copy_columns: dst [R, A], src [R / repeat, B]     (repeat >= 1 divides R)
//   sum_columns:  dst [R, A], src [R · group, B]      (group >= 1)
//   b.dst_col + b.width <= A, b.src_col + b.width <= B; one dtype. Columns of dst outside
//   the block are left alone. dst must not overlap src.
//   CPU: f32|f64. CUDA: f32|bf16, the sums and the accumulation in fp32.
// Written (or accumulated): dst.
#pragma once

#include <cstdint>

#include "kernels/base/context.h"

namespace tmt {

struct ColumnBlock {
  int64_t dst_col = 0;  // first column of dst
  int64_t src_col = 0;  // first column of src
  int64_t width = 0;    // columns moved
};

void copy_columns(const Context& ctx, const Tensor& dst, const Tensor& src, const ColumnBlock& b,
                  int64_t repeat = 1, bool accumulate = false);
void sum_columns(const Context& ctx, const Tensor& dst, const Tensor& src, const ColumnBlock& b,
                 int64_t group, bool accumulate = false);

}  // namespace tmt
