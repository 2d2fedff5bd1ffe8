// adamw: one AdamW step (Loshchilov & Hutter; the order of PyTorch's torch.optim.AdamW),
// element-wise over flat tensors.
//
// With g = grad * grad_scale and t = step (1-based):
//   param -= lr * weight_decay * param                  decoupled weight decay, applied first
//   m      = beta1 * m + (1 - beta1) * g
//   v      = beta2 * v + (1 - beta2) * g^2
//   param -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
// grad_scale folds in what the caller wants to multiply the gradient by (1 / loss scale, a clipping
// coefficient) without a separate pass.
//
//   param, m, v: [N] (any shape; treated as flat) f32|f64, one dtype   (updated in place)
//   grad:        same numel and dtype                                    (read only)
//   weight:      optional, [N] bf16 beside f32 param: written with the new param rounded to bf16
//                (round to nearest even, as cast), the mixed-precision compute copy, in the same
//                pass instead of a cast after it
//   CUDA: f32 only, computed in fp32 (the step's scalars in double on the host).
#pragma once

#include <cstdint>

#include "kernels/base/context.h"

namespace tmt {

struct AdamWParams {
  double lr = 0.0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  int64_t step = 1;  // 1-based: the first step is 1, for the bias corrections
  double grad_scale = 1.0;
};

void adamw_step(const Context& ctx, const Tensor& param, const Tensor& grad, const Tensor& m,
                const Tensor& v, const AdamWParams& params, const Tensor& weight = {});

}  // namespace tmt
