#pragma once

#include <vector>

#include "kernels/base/tensor.h"
#include "kernels/rope.h"

namespace tmt::cpu {

// inv_freq[i] for i in [0, Dr/2) and the attention factor m, as documented in kernels/rope.h.
std::vector<double> rope_inv_freq(const RopeParams& params);
double rope_attention_factor(const RopeParams& params);
// 1 + beta * ln(1 + floor(p / original)), the position scale of kernels/rope.h.
double rope_position_scale_at(int64_t p, double beta, int64_t original);

void rope_tables(const Tensor& cos, const Tensor& sin, const RopeParams& params);
void rope_position_scale(const Tensor& scale, double beta, int64_t original);
// y = g R x (transpose = false) or y = g R^T x (transpose = true); y may alias x.
void rope_apply(const Tensor& y, const Tensor& x, const Tensor& positions, const Tensor& cos,
                const Tensor& sin, const RopeApply& how, bool transpose);

}  // namespace tmt::cpu
