// The GEMMs of the linears and the experts, in the format train.precision gives them: the
// dtype's (kernels/linear.h, kernels/grouped_linear.h) or FP8 (kernels/fp8.h). The layers call
// these for every projection that FP8 training quantizes; the embedding, the head and the router
// call the kernels directly and stay in the dtype.
#pragma once

#include <vector>

#include "kernels/fp8.h"
#include "kernels/grouped_linear.h"
#include "kernels/linear.h"
#include "trainer/model/layer_env.h"

namespace tmt {

inline void gemm_fwd(const LayerEnv& env, const Tensor& y, const Tensor& x, const Tensor& weight,
                     bool accumulate = false) {
  if (env.fp8) return fp8_linear_fwd(env.ctx, y, x, weight, *env.fp8, accumulate);
  linear_fwd(env.ctx, y, x, weight, accumulate);
}

inline void gemm_bwd(const LayerEnv& env, const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                     const Tensor& x, const Tensor& weight, bool accumulate_dx = false) {
  if (env.fp8) return fp8_linear_bwd(env.ctx, dx, dweight, dy, x, weight, *env.fp8, accumulate_dx);
  linear_bwd(env.ctx, dx, dweight, dy, x, weight, accumulate_dx);
}

// x_quantized: x holds FP8 values already (the FP8 dispatch's rows).
inline void grouped_gemm_fwd(const LayerEnv& env, const Tensor& y, const Tensor& x,
                             const Tensor& weight, const std::vector<int64_t>& counts,
                             bool x_quantized = false) {
  if (env.fp8) return fp8_grouped_linear_fwd(env.ctx, y, x, weight, counts, *env.fp8, x_quantized);
  grouped_linear_fwd(env.ctx, y, x, weight, counts);
}

inline void grouped_gemm_bwd(const LayerEnv& env, const Tensor& dx, const Tensor& dweight,
                             const Tensor& dy, const Tensor& x, const Tensor& weight,
                             const std::vector<int64_t>& counts) {
  if (env.fp8) return fp8_grouped_linear_bwd(env.ctx, dx, dweight, dy, x, weight, counts, *env.fp8);
  grouped_linear_bwd(env.ctx, dx, dweight, dy, x, weight, counts);
}

}  // namespace tmt
