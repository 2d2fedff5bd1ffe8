#include "kernels/cpu/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace tmt::cpu {
namespace {

// The pair index whose wavelength fits `rotations` turns into the original context.
double yarn_correction_dim(double rotations, const RopeParams& p) {
  const double dr = static_cast<double>(p.rotated());
  const double len = static_cast<double>(p.original_max_seq_len);
  return dr * std::log(len / (2.0 * std::numbers::pi * rotations)) / (2.0 * std::log(p.theta));
}

// transformers' get_mscale: 0.1 a ln s + 1 for s > 1, else 1.
double yarn_mscale(double s, double a) { return s <= 1.0 ? 1.0 : 0.1 * a * std::log(s) + 1.0; }

template <class T>
void apply(const Tensor& y, const Tensor& x, const Tensor& positions, const Tensor& cos,
           const Tensor& sin, const RopeApply& how, bool transpose) {
  const int64_t n_tokens = x.size(0), heads = x.size(1), dh = x.size(2);
  const int64_t half = cos.size(1), dr = 2 * half;
  const int64_t s_max = cos.size(0);
  const bool interleaved = how.layout == RopeLayout::kInterleaved;
  const int64_t stride = interleaved ? 2 : 1, partner = interleaved ? 1 : half;
  const int32_t* pos = positions.ptr<const int32_t>();
  const T* ct = cos.ptr<const T>();
  const T* st = sin.ptr<const T>();
  const T* scale = how.scale.defined() ? how.scale.ptr<const T>() : nullptr;
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
    const T g = scale != nullptr ? scale[p] : T(1);
    for (int64_t h = 0; h < heads; ++h) {
      const T* xr = in + (t * heads + h) * dh;
      T* yr = out + (t * heads + h) * dh;
      for (int64_t i = 0; i < half; ++i) {
        const int64_t a = i * stride, b = a + partner;
        const T x1 = xr[a], x2 = xr[b];  // both read before either is written (y may be x)
        const T si = sign * s[i];
        yr[a] = g * (x1 * c[i] - x2 * si);
        yr[b] = g * (x2 * c[i] + x1 * si);
      }
      for (int64_t j = dr; j < dh; ++j) yr[j] = g * xr[j];
    }
  }
}

}  // namespace

std::vector<double> rope_inv_freq(const RopeParams& p) {
  const int64_t dr = p.rotated(), half = dr / 2;
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    inv_freq[static_cast<size_t>(i)] =
        std::pow(p.theta, -2.0 * static_cast<double>(i) / static_cast<double>(dr));
  }
  if (p.scaling == RopeScalingType::kNone) return inv_freq;

  double low = yarn_correction_dim(p.beta_fast, p), high = yarn_correction_dim(p.beta_slow, p);
  if (p.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dr - 1));
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
  if (p.attention_factor > 0.0) return p.attention_factor;
  if (p.mscale > 0.0 && p.mscale_all_dim > 0.0)
    return yarn_mscale(p.factor, p.mscale) / yarn_mscale(p.factor, p.mscale_all_dim);
  return yarn_mscale(p.factor, 1.0);
}

double rope_position_scale_at(int64_t p, double beta, int64_t original) {
  // floor(p / L') of non-negative integers is their integer quotient.
  return 1.0 + beta * std::log1p(static_cast<double>(p / original));
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

void rope_position_scale(const Tensor& scale, double beta, int64_t original) {
  for (int64_t p = 0; p < scale.size(0); ++p) {
    store_element(scale.dtype, scale.data, static_cast<size_t>(p),
                  rope_position_scale_at(p, beta, original));
  }
}

void rope_apply(const Tensor& y, const Tensor& x, const Tensor& positions, const Tensor& cos,
                const Tensor& sin, const RopeApply& how, bool transpose) {
  if (x.dtype == DType::kF64) return apply<double>(y, x, positions, cos, sin, how, transpose);
  apply<float>(y, x, positions, cos, sin, how, transpose);
}

}  // namespace tmt::cpu
