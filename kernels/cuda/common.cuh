// Device-side helpers the CUDA kernels share: element conversions (bf16 is loaded and stored
// through fp32), warp and block reductions, launch sizes, and the f32|f64 per-row statistics.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/base/context.h"
#include "kernels/cuda/check.cuh"

namespace tmt::cuda {

using bf16 = __nv_bfloat16;

// ---- element conversions --------------------------------------------------------------------
// Arithmetic happens in Math<T>: float for f32 and bf16 (bf16 is widened on load and rounded to
// nearest even on store), double for the f64 tensors some ops accept.
template <class T>
struct MathOf {
  using type = float;
};
template <>
struct MathOf<double> {
  using type = double;
};
template <class T>
using Math = typename MathOf<T>::type;

__device__ __forceinline__ float to_math(float x) { return x; }
__device__ __forceinline__ float to_math(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ double to_math(double x) { return x; }

template <class T>
__device__ __forceinline__ T from_math(Math<T> x) {
  if constexpr (std::is_same_v<T, bf16>) {
    return __float2bfloat16_rn(x);
  } else {
    return x;
  }
}

// ---- reductions -----------------------------------------------------------------------------
constexpr unsigned kFullMask = 0xffffffffu;

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  }
  return v;
}

// Sum over the block, returned to every thread. blockDim.x must be a multiple of 32 (at most 1024).
// Starts and ends with a barrier, so it may be called several times in a row and the caller may
// write what the threads read before it.
template <class T>
__device__ T block_sum(T v) {
  __shared__ T partial[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // an earlier call's readers are done with `partial`
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < n_warps ? partial[lane] : T(0);
  return warp_sum(v);
}

// Max over the block, returned to every thread (-inf for a block that saw nothing).
__device__ inline float block_max(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < n_warps ? partial[lane] : -INFINITY;
  return warp_max(v);
}

// ---- per-row statistics stored as f32 or f64 (rstd, losses, row_max, ...) -------------------
// A [T] vector whose dtype is chosen by the caller; the kernels read and write it through these.
struct StatVector {
  void* data = nullptr;
  bool f64 = false;

  __device__ float load(int64_t i) const {
    return f64 ? static_cast<float>(static_cast<const double*>(data)[i])
               : static_cast<const float*>(data)[i];
  }
  __device__ void store(int64_t i, float v) const {
    if (f64) {
      static_cast<double*>(data)[i] = v;
    } else {
      static_cast<float*>(data)[i] = v;
    }
  }
};

inline StatVector stat_vector(const Tensor& t) {
  TMT_CHECK(t.dtype == DType::kF32 || t.dtype == DType::kF64, "{}: statistics must be f32|f64",
            t.str());
  return StatVector{t.data, t.dtype == DType::kF64};
}

// ---- launch helpers -------------------------------------------------------------------------
constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements: enough to fill the GPU, capped so that the loop,
// not the grid, covers very large tensors.
inline int grid_for(int64_t n, int threads = kThreads) {
  return static_cast<int>(std::clamp<int64_t>((n + threads - 1) / threads, 1, 8192));
}

inline cudaStream_t stream_of(const Context& ctx) { return static_cast<cudaStream_t>(ctx.stream); }

// Index helpers for grid-stride loops.
__device__ __forceinline__ int64_t global_thread() {
  return blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

}  // namespace tmt::cuda
