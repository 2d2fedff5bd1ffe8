// swiglu on CUDA (formulas in kernels/swiglu.h): element-wise over h's T * F elements, each thread
// reading its gate and up pair from gu [T, 2F]; arithmetic in fp32.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/swiglu.h"

namespace tmt::cuda {
namespace {

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// h: [T, F]; gu: [T, 2F].
template <class T>
__global__ void fwd_kernel(T* h, const T* gu, int64_t n, int64_t f) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t t = i / f, j = i % f;
    const float g = to_math(gu[t * 2 * f + j]), u = to_math(gu[t * 2 * f + f + j]);
    h[i] = from_math<T>(g * sigmoid(g) * u);
  }
}

// dgu may be gu: the thread that writes an element pair has read it first.
template <class T>
__global__ void bwd_kernel(T* dgu, const T* dh, const T* gu, int64_t n, int64_t f) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t t = i / f, j = i % f;
    const int64_t gate = t * 2 * f + j, up = gate + f;
    const float g = to_math(gu[gate]), u = to_math(gu[up]), dy = to_math(dh[i]);
    const float s = sigmoid(g);
    dgu[gate] = from_math<T>(dy * u * s * (1.0f + g * (1.0f - s)));
    dgu[up] = from_math<T>(dy * g * s);
  }
}

template <class T>
void fwd_as(const Context& ctx, const Tensor& h, const Tensor& gu) {
  const int64_t n = h.numel();
  fwd_kernel<T><<<grid_for(n), kThreads, 0, stream_of(ctx)>>>(
      static_cast<T*>(h.data), static_cast<const T*>(gu.data), n, h.size(1));
  TMT_CUDA_CHECK_LAUNCH();
}

template <class T>
void bwd_as(const Context& ctx, const Tensor& dgu, const Tensor& dh, const Tensor& gu) {
  const int64_t n = dh.numel();
  bwd_kernel<T><<<grid_for(n), kThreads, 0, stream_of(ctx)>>>(
      static_cast<T*>(dgu.data), static_cast<const T*>(dh.data), static_cast<const T*>(gu.data), n,
      dh.size(1));
  TMT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void swiglu_fwd(const Context& ctx, const Tensor& h, const Tensor& gu) {
  if (h.numel() == 0) return;
  if (h.dtype == DType::kBF16) return fwd_as<bf16>(ctx, h, gu);
  fwd_as<float>(ctx, h, gu);
}

void swiglu_bwd(const Context& ctx, const Tensor& dgu, const Tensor& dh, const Tensor& gu) {
  if (dh.numel() == 0) return;
  if (dh.dtype == DType::kBF16) return bwd_as<bf16>(ctx, dgu, dh, gu);
  bwd_as<float>(ctx, dgu, dh, gu);
}

}  // namespace tmt::cuda
