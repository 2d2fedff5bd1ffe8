// adamw on CUDA (formula in kernels/adamw.h): one element-wise kernel over the flat group, fp32
// arithmetic; the step's scalars (bias corrections, decay factor) are computed once on the host in
// double.
#include <cuda_bf16.h>

#include <cmath>

#include "kernels/cuda/adamw.h"
#include "kernels/cuda/common.cuh"

namespace tmt::cuda {
namespace {

// 1 - beta is taken in double: in float, 1 - 0.999f is 1.3e-5 away from 0.001.
struct Scalars {
  float lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, grad_scale;
  float bias1, bias2;  // 1 - beta^t
  float decay;         // 1 - lr * weight_decay
};

// weight (may be null): the bf16 copy, written with the new param rounded to nearest even.
__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v,
                             __nv_bfloat16* weight, Scalars s, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const float g = grad[i] * s.grad_scale;
    const float mi = s.beta1 * m[i] + s.one_minus_beta1 * g;
    const float vi = s.beta2 * v[i] + s.one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    const float w = param[i] * s.decay - s.lr * (mi / s.bias1) / (sqrtf(vi / s.bias2) + s.eps);
    param[i] = w;
    if (weight != nullptr) weight[i] = __float2bfloat16_rn(w);
  }
}

}  // namespace

void adamw_step(const Context& ctx, const Tensor& param, const Tensor& grad, const Tensor& m,
                const Tensor& v, const AdamWParams& p, const Tensor& weight) {
  const int64_t n = param.numel();
  if (n == 0) return;
  const double t = static_cast<double>(p.step);
  Scalars s{};
  s.lr = static_cast<float>(p.lr);
  s.beta1 = static_cast<float>(p.beta1);
  s.beta2 = static_cast<float>(p.beta2);
  s.one_minus_beta1 = static_cast<float>(1.0 - p.beta1);
  s.one_minus_beta2 = static_cast<float>(1.0 - p.beta2);
  s.eps = static_cast<float>(p.eps);
  s.grad_scale = static_cast<float>(p.grad_scale);
  s.bias1 = static_cast<float>(1.0 - std::pow(p.beta1, t));
  s.bias2 = static_cast<float>(1.0 - std::pow(p.beta2, t));
  s.decay = static_cast<float>(1.0 - p.lr * p.weight_decay);
  adamw_kernel<<<grid_for(n), kThreads, 0, stream_of(ctx)>>>(
      static_cast<float*>(param.data), static_cast<const float*>(grad.data),
      static_cast<float*>(m.data), static_cast<float*>(v.data),
      weight.defined() ? static_cast<__nv_bfloat16*>(weight.data) : nullptr, s, n);
  TMT_CUDA_CHECK_LAUNCH();
}

}  // namespace tmt::cuda
