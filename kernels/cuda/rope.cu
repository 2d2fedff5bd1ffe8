// rope on CUDA (formulas in kernels/rope.h).
//
//   tables: one thread per (position, pair), angle and cos/sin in double, stored in the tables'
//           dtype (as the CPU reference does).
//   apply:  one thread per (token, head, pair) and per (token, head, passed-through dim): a pair
//           thread reads x_a and x_b, writes both (y may alias x); the others scale one element.
//           A position outside the tables is a broken invariant: the kernel traps, and the next
//           CUDA call on the stream fails with it (TMT_CUDA_CHECK makes that fatal).
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rope.h"

namespace tmt::cuda {
namespace {

struct Frequencies {
  double inv_freq[kRopeMaxHalf];
  double m;  // the attention factor folded into cos and sin
};

// cos, sin: [S_max, half].
template <class Tab>
__global__ void tables_kernel(Tab* cos_out, Tab* sin_out, const Frequencies freq, int64_t s_max,
                              int64_t half) {
  const int64_t n = s_max * half;
  for (int64_t k = global_thread(); k < n; k += grid_threads()) {
    const int64_t p = k / half, i = k % half;
    const double angle = static_cast<double>(p) * freq.inv_freq[i];
    double s, c;
    sincos(angle, &s, &c);
    cos_out[k] = from_math<Tab>(static_cast<float>(freq.m * c));
    sin_out[k] = from_math<Tab>(static_cast<float>(freq.m * s));
  }
}

template <class Tab>
__global__ void position_scale_kernel(Tab* scale, int64_t s_max, double beta, int64_t original) {
  for (int64_t p = global_thread(); p < s_max; p += grid_threads())
    scale[p] =
        from_math<Tab>(static_cast<float>(1.0 + beta * log1p(static_cast<double>(p / original))));
}

// x, y: [T, heads, dh], the first 2 * half dims rotating; positions: [T]; cos, sin: [s_max, half];
// scale: [s_max] or null. Pair i is (i, i + half) or, interleaved, (2i, 2i + 1). sign = -1 applies
// R^T.
template <class T, class Tab>
__global__ void apply_kernel(T* y, const T* x, const int32_t* positions, const Tab* cos_t,
                             const Tab* sin_t, const Tab* scale, int64_t n_tokens, int64_t heads,
                             int64_t dh, int64_t half, int64_t s_max, bool interleaved,
                             float sign) {
  const int64_t passed = dh - 2 * half, per_row = half + passed;
  const int64_t n = n_tokens * heads * per_row;
  for (int64_t k = global_thread(); k < n; k += grid_threads()) {
    const int64_t row = k / per_row, i = k % per_row;  // row = token * heads + head
    const int64_t p = positions[row / heads];
    if (p < 0 || p >= s_max) __trap();
    const float g = scale != nullptr ? to_math(scale[p]) : 1.0f;
    if (i >= half) {  // a dim past the rotary ones: scaled only
      const int64_t j = row * dh + 2 * half + (i - half);
      y[j] = from_math<T>(g * to_math(x[j]));
      continue;
    }
    const float c = to_math(cos_t[p * half + i]), s = sign * to_math(sin_t[p * half + i]);
    const int64_t a = row * dh + (interleaved ? 2 * i : i), b = a + (interleaved ? 1 : half);
    const float x1 = to_math(x[a]), x2 = to_math(x[b]);
    y[a] = from_math<T>(g * (x1 * c - x2 * s));
    y[b] = from_math<T>(g * (x2 * c + x1 * s));
  }
}

template <class Tab>
void tables_as(const Context& ctx, const Tensor& cos, const Tensor& sin, const Frequencies& freq) {
  const int64_t s_max = cos.size(0), half = cos.size(1);
  tables_kernel<Tab><<<grid_for(s_max * half), kThreads, 0, stream_of(ctx)>>>(
      static_cast<Tab*>(cos.data), static_cast<Tab*>(sin.data), freq, s_max, half);
  TMT_CUDA_CHECK_LAUNCH();
}

template <class T, class Tab>
void apply_as(const Context& ctx, const Tensor& y, const Tensor& x, const Tensor& positions,
              const Tensor& cos, const Tensor& sin, const RopeApply& how, bool transpose) {
  const int64_t n_tokens = x.size(0), heads = x.size(1), dh = x.size(2), half = cos.size(1);
  const Tab* scale = how.scale.defined() ? static_cast<const Tab*>(how.scale.data) : nullptr;
  apply_kernel<T, Tab><<<grid_for(n_tokens * heads * (dh - half)), kThreads, 0, stream_of(ctx)>>>(
      static_cast<T*>(y.data), static_cast<const T*>(x.data),
      static_cast<const int32_t*>(positions.data), static_cast<const Tab*>(cos.data),
      static_cast<const Tab*>(sin.data), scale, n_tokens, heads, dh, half, cos.size(0),
      how.layout == RopeLayout::kInterleaved, transpose ? -1.0f : 1.0f);
  TMT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void rope_tables(const Context& ctx, const Tensor& cos, const Tensor& sin,
                 const std::vector<double>& inv_freq, double m) {
  TMT_CHECK(static_cast<int64_t>(inv_freq.size()) == cos.size(1) && cos.size(1) <= kRopeMaxHalf,
            "rope_tables: {} frequencies for tables {} (at most {} on cuda)", inv_freq.size(),
            cos.str(), kRopeMaxHalf);
  if (cos.numel() == 0) return;
  Frequencies freq{};
  for (size_t i = 0; i < inv_freq.size(); ++i) freq.inv_freq[i] = inv_freq[i];
  freq.m = m;
  if (cos.dtype == DType::kBF16) return tables_as<bf16>(ctx, cos, sin, freq);
  tables_as<float>(ctx, cos, sin, freq);
}

void rope_position_scale(const Context& ctx, const Tensor& scale, double beta, int64_t original) {
  const int64_t s_max = scale.size(0);
  if (s_max == 0) return;
  if (scale.dtype == DType::kBF16) {
    position_scale_kernel<bf16><<<grid_for(s_max), kThreads, 0, stream_of(ctx)>>>(
        static_cast<bf16*>(scale.data), s_max, beta, original);
  } else {
    position_scale_kernel<float><<<grid_for(s_max), kThreads, 0, stream_of(ctx)>>>(
        static_cast<float*>(scale.data), s_max, beta, original);
  }
  TMT_CUDA_CHECK_LAUNCH();
}

void rope_apply(const Context& ctx, const Tensor& y, const Tensor& x, const Tensor& positions,
                const Tensor& cos, const Tensor& sin, const RopeApply& how, bool transpose) {
  if (x.numel() == 0) return;
  if (x.dtype == DType::kF32)
    return apply_as<float, float>(ctx, y, x, positions, cos, sin, how, transpose);
  if (cos.dtype == DType::kF32) {
    return apply_as<bf16, float>(ctx, y, x, positions, cos, sin, how, transpose);
  }
  apply_as<bf16, bf16>(ctx, y, x, positions, cos, sin, how, transpose);
}

}  // namespace tmt::cuda
