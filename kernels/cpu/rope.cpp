#include "kernels/cpu/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace tmt::cpu {
namespace {

// The pair index whose wavelength fits `rotations` turns into the original context.
double yarn_correction_dim(double rotations, const RopeParams& p) {
  const double dh = static_cast<double>(p.head_dim);
  const double len = static_cast<double>(p.original_max_seq_len);
  return dh * std::log(len / (2.0 * std::numbers::pi * rotations)) / (2.0 * std::log(p.theta));
}

template <class T>
void apply(const Tensor& y, const Tensor& x, const Tensor& positions, const Tensor& cos,
           const Tensor& sin, bool transpose) {
  const int64_t n_tokens = x.size(0), heads = x.size(1), dh = x.size(2), half = dh / 2;
  const int64_t s_max = cos.size(0);
  const int32_t* pos = positions.ptr<const int32_t>();
  const T* ct = cos.ptr<const T>();
  const T* st = sin.ptr<const T>();
  const T* in = x.ptr<const T>();
  T* out = y.ptr<T>();
  // R^T has the sine negated.
  const T sign = transpose ? T(-1) : T(1);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int64_t p = pos[t];
    TMT_CHECK(0 <= p && p < s_max, "rope: position {} of token {} outside the tables [0, {})", p, t,
              s_max);
    const T* c = ct + p * half;
    const T* s = st + p * half;
    for (int64_t h = 0; h < heads; ++h) {
      const T* xr = in + (t * heads + h) * dh;
      T* yr = out + (t * heads + h) * dh;
      for (int64_t i = 0; i < half; ++i) {
        const T x1 = xr[i], x2 = xr[i + half];  // both read before either is written (y may be x)
        const T si = sign * s[i];
        yr[i] = x1 * c[i] - x2 * si;
        yr[i + half] = x2 * c[i] + x1 * si;
      }
    }
  }
}

}  // namespace

std::vector<double> rope_inv_freq(const RopeParams& p) {
  const int64_t half = p.head_dim / 2;
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    inv_freq[static_cast<size_t>(i)] =
        std::pow(p.theta, -2.0 * static_cast<double>(i) / static_cast<double>(p.head_dim));
  }
  if (p.scaling == RopeScalingType::kNone) return inv_freq;

  const double low = std::max(std::floor(yarn_correction_dim(p.beta_fast, p)), 0.0);
  double high =
      std::min(std::ceil(yarn_correction_dim(p.beta_slow, p)), static_cast<double>(p.head_dim - 1));
  if (low == high) high += 0.001;  // avoid a zero-width ramp
  for (int64_t i = 0; i < half; ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    const double f = inv_freq[static_cast<size_t>(i)];
    inv_freq[static_cast<size_t>(i)] = f * (1.0 - ramp) + (f / p.factor) * ramp;
  }
  return inv_freq;
}

double rope_attention_factor(const RopeParams& p) {
  if (p.scaling == RopeScalingType::kNone) return 1.0;
  const double base = p.factor > 1.0 ? 0.1 * std::log(p.factor) + 1.0 : 1.0;
  return p.mscale * base;
}

void rope_tables(const Tensor& cos, const Tensor& sin, const RopeParams& params) {
  const std::vector<double> inv_freq = rope_inv_freq(params);
  const double m = rope_attention_factor(params);
  const int64_t s_max = cos.size(0), half = cos.size(1);
  for (int64_t p = 0; p < s_max; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(p) * inv_freq[static_cast<size_t>(i)];
      const auto k = static_cast<size_t>(p * half + i);
      store_element(cos.dtype, cos.data, k, m * std::cos(angle));
      store_element(sin.dtype, sin.data, k, m * std::sin(angle));
    }
  }
}

void rope_apply(const Tensor& y, const Tensor& x, const Tensor& positions, const Tensor& cos,
                const Tensor& sin, bool transpose) {
  if (x.dtype == DType::kF64) return apply<double>(y, x, positions, cos, sin, transpose);
  apply<float>(y, x, positions, cos, sin, transpose);
}

}  // namespace tmt::cpu
