// rmsnorm: root-mean-square normalisation with a learned per-channel gain (no bias, no centring).
//
//   fwd: rstd[t]  = 1 / sqrt(mean_d(x[t, d]^2) + eps)
//        y[t, d]  = x[t, d] * rstd[t] * weight[d]
//   bwd: with a[t] = sum_d dy[t, d] * weight[d] * x[t, d],
//        dx[t, d]       = rstd[t] * weight[d] * dy[t, d] - rstd[t]^3 * x[t, d] * a[t] / D
//        dweight[d]    += sum_t dy[t, d] * x[t, d] * rstd[t]
//
//   x, y, dy, dx:      [T, D] f32|f64, one dtype
//   weight, dweight:   [D]    same dtype as x
//   rstd:              [T]    f32|f64 (may differ from x), saved by the forward for the backward
//   CUDA: x, y, dy, dx, weight, dweight f32|bf16 (one dtype; with bf16 dweight may be f32, for
//   fp32 gradient accumulation), statistics and sums in fp32.
//   Written: y, rstd (fwd); dx (bwd). Accumulated (+=): dweight.
// dx may alias dy.
#pragma once

#include "kernels/base/context.h"

namespace tmt {

void rmsnorm_fwd(const Context& ctx, const Tensor& y, const Tensor& rstd, const Tensor& x,
                 const Tensor& weight, double eps);
void rmsnorm_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                 const Tensor& x, const Tensor& weight, const Tensor& rstd);

}  // namespace tmt
