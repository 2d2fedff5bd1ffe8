// The CUDA side of kernels/rope.h. Elements f32 or bf16; tables f32, or bf16 with bf16 elements.
#pragma once

#include <vector>

#include "kernels/base/context.h"
#include "kernels/rope.h"

namespace tmt::cuda {

// The largest Dh / 2 the tables kernel takes (the frequencies travel as a kernel argument).
constexpr int64_t kRopeMaxHalf = 256;

// cos[p, i] = m * cos(p * inv_freq[i]), sin likewise; inv_freq and m computed on the host (the
// CPU reference's rope_inv_freq and rope_attention_factor), so both backends share the formula.
void rope_tables(const Context& ctx, const Tensor& cos, const Tensor& sin,
                 const std::vector<double>& inv_freq, double m);
// scale[p] = 1 + beta * ln(1 + floor(p / original)).
void rope_position_scale(const Context& ctx, const Tensor& scale, double beta, int64_t original);
// y = g R x (transpose = false) or g R^T x, in how.layout, g = how.scale[p] or 1; y may alias x.
void rope_apply(const Context& ctx, const Tensor& y, const Tensor& x, const Tensor& positions,
                const Tensor& cos, const Tensor& sin, const RopeApply& how, bool transpose);

}  // namespace tmt::cuda
