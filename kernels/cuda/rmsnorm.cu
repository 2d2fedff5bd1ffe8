// rmsnorm on CUDA (formulas in kernels/rmsnorm.h). Statistics and sums in fp32 whatever the
// element type.
//
//   fwd:           one block per row: sum of squares, rstd, then y = x * rstd * weight.
//   bwd, dweight:  one block per 32 columns; its threads stride over the tokens and the block adds
//                  up its column sums in a fixed order (deterministic, no atomics). Runs first,
//                  since dx may alias dy. dweight may be f32 beside bf16 (fp32 accumulation).
//   bwd, dx:       one block per row: a = sum_d dy * weight * x, then dx.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rmsnorm.h"

namespace tmt::cuda {
namespace {

// x, y: [T, D]; weight: [D]; rstd: [T] (written).
template <class T>
__global__ void fwd_kernel(T* y, StatVector rstd, const T* x, const T* weight, int64_t d,
                           float eps) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * d;
  T* yr = y + row * d;
  float sum_sq = 0.0f;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    const float v = to_math(xr[j]);
    sum_sq += v * v;
  }
  sum_sq = block_sum(sum_sq);
  const float r = 1.0f / sqrtf(sum_sq / static_cast<float>(d) + eps);
  // rstd holds this float exactly (as f32 or f64): the backward reads back the value used here.
  if (threadIdx.x == 0) rstd.store(row, r);
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    yr[j] = from_math<T>(to_math(xr[j]) * r * to_math(weight[j]));
  }
}

// dweight[d] += sum_t dy[t, d] * x[t, d] * rstd[t]. Block (32, kRowsPerBlock): x picks the column
// within the block's 32, y strides over the tokens.
constexpr int kRowsPerBlock = 16;

template <class T, class G>
__global__ void dweight_kernel(G* dweight, const T* dy, const T* x, StatVector rstd,
                               int64_t n_tokens, int64_t d) {
  __shared__ float partial[kRowsPerBlock][33];
  const int64_t col = blockIdx.x * 32 + threadIdx.x;
  float acc = 0.0f;
  if (col < d) {
    for (int64_t t = threadIdx.y; t < n_tokens; t += kRowsPerBlock) {
      acc += to_math(dy[t * d + col]) * to_math(x[t * d + col]) * rstd.load(t);
    }
  }
  partial[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < d) {
    float sum = 0.0f;
    for (int i = 0; i < kRowsPerBlock; ++i) sum += partial[i][threadIdx.x];
    dweight[col] = from_math<G>(to_math(dweight[col]) + sum);
  }
}

// dx[t, :] from dy[t, :]; dx may be dy (each thread reads an element before writing it, and the
// row's reduction finishes before any write).
template <class T>
__global__ void dx_kernel(T* dx, const T* dy, const T* x, const T* weight, StatVector rstd,
                          int64_t d) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * d;
  const T* gr = dy + row * d;
  T* out = dx + row * d;
  float a = 0.0f;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    a += to_math(gr[j]) * to_math(weight[j]) * to_math(xr[j]);
  }
  a = block_sum(a);
  const float r = rstd.load(row);
  const float c = r * r * r * a / static_cast<float>(d);
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    out[j] = from_math<T>(r * to_math(weight[j]) * to_math(gr[j]) - c * to_math(xr[j]));
  }
}

template <class T>
void fwd_as(const Context& ctx, const Tensor& y, const Tensor& rstd, const Tensor& x,
            const Tensor& weight, double eps) {
  const int64_t n_tokens = x.size(0), d = x.size(1);
  fwd_kernel<T><<<static_cast<unsigned>(n_tokens), kThreads, 0, stream_of(ctx)>>>(
      static_cast<T*>(y.data), stat_vector(rstd), static_cast<const T*>(x.data),
      static_cast<const T*>(weight.data), d, static_cast<float>(eps));
  TMT_CUDA_CHECK_LAUNCH();
}

// G: dweight's element type (T, or float beside bf16).
template <class T, class G>
void bwd_as(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dy,
            const Tensor& x, const Tensor& weight, const Tensor& rstd) {
  const int64_t n_tokens = x.size(0), d = x.size(1);
  const auto column_blocks = static_cast<unsigned>((d + 31) / 32);
  dweight_kernel<T, G><<<column_blocks, dim3(32, kRowsPerBlock), 0, stream_of(ctx)>>>(
      static_cast<G*>(dweight.data), static_cast<const T*>(dy.data), static_cast<const T*>(x.data),
      stat_vector(rstd), n_tokens, d);
  TMT_CUDA_CHECK_LAUNCH();
  if (n_tokens == 0) return;
  dx_kernel<T><<<static_cast<unsigned>(n_tokens), kThreads, 0, stream_of(ctx)>>>(
      static_cast<T*>(dx.data), static_cast<const T*>(dy.data), static_cast<const T*>(x.data),
      static_cast<const T*>(weight.data), stat_vector(rstd), d);
  TMT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void rmsnorm_fwd(const Context& ctx, const Tensor& y, const Tensor& rstd, const Tensor& x,
                 const Tensor& weight, double eps) {
  if (x.size(0) == 0) return;
  if (x.dtype == DType::kBF16) return fwd_as<bf16>(ctx, y, rstd, x, weight, eps);
  fwd_as<float>(ctx, y, rstd, x, weight, eps);
}

void rmsnorm_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                 const Tensor& x, const Tensor& weight, const Tensor& rstd) {
  if (x.size(1) == 0) return;
  if (x.dtype == DType::kBF16 && dweight.dtype == DType::kF32) {
    return bwd_as<bf16, float>(ctx, dx, dweight, dy, x, weight, rstd);
  }
  if (x.dtype == DType::kBF16) return bwd_as<bf16, bf16>(ctx, dx, dweight, dy, x, weight, rstd);
  bwd_as<float, float>(ctx, dx, dweight, dy, x, weight, rstd);
}

}  // namespace tmt::cuda
