#include "kernels/cpu/adamw.h"

#include <cmath>
#include <cstdint>

#include "kernels/base/dtype.h"

namespace tmt::cpu {
namespace {

template <class T>
void step(const Tensor& param, const Tensor& grad, const Tensor& m_state, const Tensor& v_state,
          const AdamWParams& p, uint16_t* bf16_copy) {
  const int64_t n = param.numel();
  T* w = param.ptr<T>();
  const T* g_in = grad.ptr<const T>();
  T* m = m_state.ptr<T>();
  T* v = v_state.ptr<T>();
  const double t = static_cast<double>(p.step);
  const double bias1 = 1.0 - std::pow(p.beta1, t);
  const double bias2 = 1.0 - std::pow(p.beta2, t);
  const double decay = 1.0 - p.lr * p.weight_decay;
  // Element-wise in double, stored in T.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const double g = static_cast<double>(g_in[i]) * p.grad_scale;
    const double mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    const double vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = static_cast<T>(mi);
    v[i] = static_cast<T>(vi);
    const double wi = static_cast<double>(w[i]) * decay;
    w[i] = static_cast<T>(wi - p.lr * (mi / bias1) / (std::sqrt(vi / bias2) + p.eps));
    if (bf16_copy != nullptr) bf16_copy[i] = float_to_bf16(static_cast<float>(w[i]));
  }
}

}  // namespace

void adamw_step(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                const AdamWParams& params, const Tensor& weight) {
  if (param.dtype == DType::kF64) return step<double>(param, grad, m, v, params, nullptr);
  step<float>(param, grad, m, v, params, weight.defined() ? weight.ptr<uint16_t>() : nullptr);
}

}  // namespace tmt::cpu
