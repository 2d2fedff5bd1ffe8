#include "kernels/cpu/rmsnorm.h"

#include <cmath>

namespace tmt::cpu {
namespace {

// rstd is one value a row and may be f32 or f64 whatever x is, so it goes through
// load/store_element.

template <class T>
void fwd(const Tensor& y, const Tensor& rstd, const Tensor& x, const Tensor& weight, double eps) {
  const int64_t n_tokens = x.size(0), d = x.size(1);
  const T* in = x.ptr<const T>();
  const T* w = weight.ptr<const T>();
  T* out = y.ptr<T>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n_tokens; ++t) {
    const T* xr = in + t * d;
    double sum_sq = 0.0;
    for (int64_t j = 0; j < d; ++j) sum_sq += static_cast<double>(xr[j]) * xr[j];
    const double r = 1.0 / std::sqrt(sum_sq / static_cast<double>(d) + eps);
    store_element(rstd.dtype, rstd.data, static_cast<size_t>(t), r);
    // The backward reads rstd back through its dtype; the forward uses the same rounded value.
    const T rt = static_cast<T>(load_element(rstd.dtype, rstd.data, static_cast<size_t>(t)));
    for (int64_t j = 0; j < d; ++j) out[t * d + j] = xr[j] * rt * w[j];
  }
}

template <class T>
void bwd(const Tensor& dx, const Tensor& dweight, const Tensor& dy, const Tensor& x,
         const Tensor& weight, const Tensor& rstd) {
  const int64_t n_tokens = x.size(0), d = x.size(1);
  const T* in = x.ptr<const T>();
  const T* g = dy.ptr<const T>();
  const T* w = weight.ptr<const T>();
  T* dw = dweight.ptr<T>();
  T* out = dx.ptr<T>();
  // dweight first: dx may alias dy. Columns are independent, and each sums over tokens in order.
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < d; ++j) {
    double acc = 0.0;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const double r = load_element(rstd.dtype, rstd.data, static_cast<size_t>(t));
      acc += static_cast<double>(g[t * d + j]) * in[t * d + j] * r;
    }
    dw[j] += static_cast<T>(acc);
  }
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n_tokens; ++t) {
    const T* xr = in + t * d;
    const T* gr = g + t * d;
    const double r = load_element(rstd.dtype, rstd.data, static_cast<size_t>(t));
    double a = 0.0;
    for (int64_t j = 0; j < d; ++j) a += static_cast<double>(gr[j]) * w[j] * xr[j];
    const double c = r * r * r * a / static_cast<double>(d);
    for (int64_t j = 0; j < d; ++j) {
      out[t * d + j] = static_cast<T>(r * w[j] * gr[j] - c * xr[j]);
    }
  }
}

}  // namespace

void rmsnorm_fwd(const Tensor& y, const Tensor& rstd, const Tensor& x, const Tensor& weight,
                 double eps) {
  if (x.dtype == DType::kF64) return fwd<double>(y, rstd, x, weight, eps);
  fwd<float>(y, rstd, x, weight, eps);
}

void rmsnorm_bwd(const Tensor& dx, const Tensor& dweight, const Tensor& dy, const Tensor& x,
                 const Tensor& weight, const Tensor& rstd) {
  if (x.dtype == DType::kF64) return bwd<double>(dx, dweight, dy, x, weight, rstd);
  bwd<float>(dx, dweight, dy, x, weight, rstd);
}

}  // namespace tmt::cpu
