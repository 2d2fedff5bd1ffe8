#include <cuda_bf16.h>

#include "kernels/cuda/cast.h"
#include "kernels/cuda/check.cuh"

namespace tmt::cuda {
namespace {

__global__ void f32_to_bf16(__nv_bfloat16* y, const float* x, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = __float2bfloat16_rn(x[i]);
  }
}

__global__ void bf16_to_f32(float* y, const __nv_bfloat16* x, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    y[i] = __bfloat162float(x[i]);
  }
}

}  // namespace

bool can_cast(DType out, DType in) {
  return (out == DType::kBF16 && in == DType::kF32) || (out == DType::kF32 && in == DType::kBF16);
}

void cast(const Context& ctx, const Tensor& out, const Tensor& in) {
  const int64_t n = in.numel();
  if (n == 0) return;
  constexpr int kThreads = 256;
  const int blocks = static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535));
  auto stream = static_cast<cudaStream_t>(ctx.stream);
  if (out.dtype == DType::kBF16) {
    f32_to_bf16<<<blocks, kThreads, 0, stream>>>(static_cast<__nv_bfloat16*>(out.data),
                                                 static_cast<const float*>(in.data), n);
  } else {
    bf16_to_f32<<<blocks, kThreads, 0, stream>>>(static_cast<float*>(out.data),
                                                 static_cast<const __nv_bfloat16*>(in.data), n);
  }
  TMT_CUDA_CHECK_LAUNCH();
}

}  // namespace tmt::cuda
