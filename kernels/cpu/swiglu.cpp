#include "kernels/cpu/swiglu.h"

#include <cmath>

namespace tmt::cpu {
namespace {

template <class T>
T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

template <class T>
void fwd(const Tensor& h, const Tensor& gu) {
  const int64_t n_tokens = h.size(0), f = h.size(1);
  const T* in = gu.ptr<const T>();
  T* out = h.ptr<T>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n_tokens; ++t) {
    const T* gate = in + t * 2 * f;
    const T* up = gate + f;
    for (int64_t j = 0; j < f; ++j) out[t * f + j] = gate[j] * sigmoid(gate[j]) * up[j];
  }
}

template <class T>
void bwd(const Tensor& dgu, const Tensor& dh, const Tensor& gu) {
  const int64_t n_tokens = dh.size(0), f = dh.size(1);
  const T* in = gu.ptr<const T>();
  const T* g = dh.ptr<const T>();
  T* out = dgu.ptr<T>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n_tokens; ++t) {
    const T* gate = in + t * 2 * f;
    const T* up = gate + f;
    T* dgate = out + t * 2 * f;
    T* dup = dgate + f;
    for (int64_t j = 0; j < f; ++j) {
      const T x = gate[j], u = up[j], s = sigmoid(x);  // read both before writing (dgu may be gu)
      dgate[j] = g[t * f + j] * u * s * (T(1) + x * (T(1) - s));
      dup[j] = g[t * f + j] * x * s;
    }
  }
}

}  // namespace

void swiglu_fwd(const Tensor& h, const Tensor& gu) {
  if (gu.dtype == DType::kF64) return fwd<double>(h, gu);
  fwd<float>(h, gu);
}

void swiglu_bwd(const Tensor& dgu, const Tensor& dh, const Tensor& gu) {
  if (gu.dtype == DType::kF64) return bwd<double>(dgu, dh, gu);
  bwd<float>(dgu, dh, gu);
}

}  // namespace tmt::cpu
