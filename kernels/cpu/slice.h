#pragma once

#include <cstdint>

#include "kernels/base/tensor.h"
#include "kernels/slice.h"

namespace tmt::cpu {

// As kernels/slice.h, arguments already checked.
void copy_columns(const Tensor& dst, const Tensor& src, const ColumnBlock& b, int64_t repeat,
                  bool accumulate);
void sum_columns(const Tensor& dst, const Tensor& src, const ColumnBlock& b, int64_t group,
                 bool accumulate);

}  // namespace tmt::cpu
