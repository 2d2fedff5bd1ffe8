#include "kernels/cpu/reduce.h"

#include <array>

namespace tmt::cpu {
namespace {

// sum_squares splits x into this many contiguous chunks whatever the thread count, and adds their
// sums in chunk order: the same bits on 1 thread or 16.
constexpr int64_t kChunks = 64;

template <class T>
double sum_sq(const Tensor& x) {
  const int64_t n = x.numel();
  const T* p = x.ptr<const T>();
  std::array<double, kChunks> partial{};
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < kChunks; ++c) {
    const int64_t begin = n * c / kChunks, end = n * (c + 1) / kChunks;
    double s = 0.0;
    for (int64_t i = begin; i < end; ++i) s += static_cast<double>(p[i]) * p[i];
    partial[static_cast<size_t>(c)] = s;
  }
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}

template <class T>
void scale_impl(const Tensor& x, double alpha) {
  const int64_t n = x.numel();
  T* p = x.ptr<T>();
  const T a = static_cast<T>(alpha);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) p[i] *= a;
}

template <class T>
void add_impl(const Tensor& y, const Tensor& x, double alpha) {
  const int64_t n = x.numel();
  T* dst = y.ptr<T>();
  const T* src = x.ptr<const T>();
  const T a = static_cast<T>(alpha);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) dst[i] += a * src[i];
}

}  // namespace

double sum_squares(const Tensor& x) {
  if (x.dtype == DType::kF64) return sum_sq<double>(x);
  return sum_sq<float>(x);
}

void scale(const Tensor& x, double alpha) {
  if (x.dtype == DType::kF64) return scale_impl<double>(x, alpha);
  scale_impl<float>(x, alpha);
}

void add(const Tensor& y, const Tensor& x, double alpha) {
  if (x.dtype == DType::kF64) return add_impl<double>(y, x, alpha);
  add_impl<float>(y, x, alpha);
}

}  // namespace tmt::cpu
