#pragma once

#include <vector>

#include "kernels/base/tensor.h"
#include "kernels/rope.h"

namespace tmt::cpu {

// inv_freq[i] for i in [0, Dh/2) and the attention factor m, as documented in kernels/rope.h.
std::vector<double> rope_inv_freq(const RopeParams& params);
double rope_attention_factor(const RopeParams& params);

void rope_tables(const Tensor& cos, const Tensor& sin, const RopeParams& params);
// y = R x (transpose = false) or y = R^T x (transpose = true); y may alias x.
void rope_apply(const Tensor& y, const Tensor& x, const Tensor& positions, const Tensor& cos,
                const Tensor& sin, bool transpose);

}  // namespace tmt::cpu
