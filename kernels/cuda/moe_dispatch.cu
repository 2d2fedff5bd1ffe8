// moe_dispatch on CUDA (formulas in kernels/moe_dispatch.h).
//
// Every kernel has one writer per output element, so the results do not depend on scheduling:
//   permute_fwd   a grid-stride copy over [R, D]: x_perm[r, j] = x[src_token[r], j]
//   permute_bwd   over [T, D]: dx[t, j] = Σ_k dx_perm[slot[t, k], j], k ascending (written)
//   unpermute_fwd over [T, D]: y[t, j] += Σ_k topk_w[t, k] · y_perm[slot[t, k], j], k ascending
//   unpermute_bwd one warp per assignment (t, k): its dy_perm row, and dtopk_w[t, k] += the warp's
//                 dot product dy[t] · y_perm[slot[t, k]]
// Arithmetic in fp32; bf16 rows are widened on load and rounded once on store.
#include <vector>

#include "kernels/base/workspace.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/moe_dispatch.h"

namespace tmt::cuda {
namespace {

// The plan's index array that `op` reads, copied into the caller's workspace (Context::workspace).
// The copy (cudaMemcpyAsync from pageable memory, which stages the data before returning) is
// ordered on the stream after the kernels that read what the workspace held before.
const int32_t* upload(const Context& ctx, const std::vector<int32_t>& values, const char* op) {
  const size_t bytes = values.size() * sizeof(int32_t);
  int32_t* device = workspace_for<int32_t>(ctx, bytes, op);
  if (!values.empty()) {
    TMT_CUDA_CHECK(
        cudaMemcpyAsync(device, values.data(), bytes, cudaMemcpyHostToDevice, stream_of(ctx)));
  }
  return device;
}

template <class T>
__global__ void gather_kernel(T* __restrict__ x_perm, const T* __restrict__ x,
                              const int32_t* __restrict__ src_token, int64_t rows, int64_t d) {
  const int64_t n = rows * d;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t r = i / d, j = i - r * d;
    x_perm[i] = x[src_token[r] * d + j];
  }
}

template <class T>
__global__ void scatter_sum_kernel(T* __restrict__ dx, const T* __restrict__ dx_perm,
                                   const int32_t* __restrict__ slot, int64_t tokens, int64_t d,
                                   int k) {
  const int64_t n = tokens * d;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t t = i / d, j = i - t * d;
    float acc = 0.0f;
    for (int c = 0; c < k; ++c) {
      const int32_t s = slot[t * k + c];
      if (s >= 0) acc += to_math(dx_perm[s * d + j]);
    }
    dx[i] = from_math<T>(acc);
  }
}

template <class T>
__global__ void combine_kernel(T* __restrict__ y, const T* __restrict__ y_perm,
                               const float* __restrict__ topk_w, const int32_t* __restrict__ slot,
                               int64_t tokens, int64_t d, int k) {
  const int64_t n = tokens * d;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t t = i / d, j = i - t * d;
    float acc = to_math(y[i]);
    for (int c = 0; c < k; ++c) {
      const int32_t s = slot[t * k + c];
      if (s >= 0) acc += topk_w[t * k + c] * to_math(y_perm[s * d + j]);
    }
    y[i] = from_math<T>(acc);
  }
}

constexpr int kWarpsPerBlock = 8;

template <class T>
__global__ void combine_bwd_kernel(T* __restrict__ dy_perm, float* __restrict__ dtopk_w,
                                   const T* __restrict__ dy, const T* __restrict__ y_perm,
                                   const float* __restrict__ topk_w,
                                   const int32_t* __restrict__ slot, int64_t assignments, int64_t d,
                                   int k) {
  const int lane = threadIdx.x % 32;
  const int64_t a = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / 32;
  if (a >= assignments) return;
  const int32_t s = slot[a];
  if (s < 0) return;
  const int64_t t = a / k;
  const float w = topk_w[a];
  float dot = 0.0f;
  for (int64_t j = lane; j < d; j += 32) {
    const float g = to_math(dy[t * d + j]);
    dy_perm[s * d + j] = from_math<T>(w * g);
    dot += g * to_math(y_perm[s * d + j]);
  }
  dot = warp_sum(dot);
  if (lane == 0) dtopk_w[a] += dot;
}

// Calls f(T{}) with T the storage type of `dtype` (f32 or bf16; the dispatch file checked it).
template <class F>
void with_type(DType dtype, F&& f) {
  if (dtype == DType::kBF16) {
    f(bf16{});
  } else {
    f(float{});
  }
}

template <class T>
T* data(const Tensor& t) {
  return static_cast<T*>(t.data);
}

}  // namespace

size_t moe_dispatch_workspace_bytes(int64_t assignments) {
  return static_cast<size_t>(assignments) * sizeof(int32_t);
}

void permute_fwd(const Context& ctx, const Tensor& x_perm, const Tensor& x,
                 const DispatchPlan& plan) {
  if (x_perm.numel() == 0) return;
  const int32_t* src = upload(ctx, plan.src_token, "permute_fwd");
  with_type(x.dtype, [&](auto zero) {
    using T = decltype(zero);
    gather_kernel<T><<<grid_for(x_perm.numel()), kThreads, 0, stream_of(ctx)>>>(
        data<T>(x_perm), data<const T>(x), src, plan.rows(), x.size(1));
  });
  TMT_CUDA_CHECK_LAUNCH();
}

void permute_bwd(const Context& ctx, const Tensor& dx, const Tensor& dx_perm,
                 const DispatchPlan& plan) {
  if (dx.numel() == 0) return;
  const int64_t tokens = dx.size(0);
  const int k = static_cast<int>(static_cast<int64_t>(plan.slot.size()) / tokens);
  const int32_t* slot = upload(ctx, plan.slot, "permute_bwd");
  with_type(dx.dtype, [&](auto zero) {
    using T = decltype(zero);
    scatter_sum_kernel<T><<<grid_for(dx.numel()), kThreads, 0, stream_of(ctx)>>>(
        data<T>(dx), data<const T>(dx_perm), slot, tokens, dx.size(1), k);
  });
  TMT_CUDA_CHECK_LAUNCH();
}

void unpermute_fwd(const Context& ctx, const Tensor& y, const Tensor& y_perm, const Tensor& topk_w,
                   const DispatchPlan& plan) {
  if (y.numel() == 0) return;
  const int32_t* slot = upload(ctx, plan.slot, "unpermute_fwd");
  with_type(y.dtype, [&](auto zero) {
    using T = decltype(zero);
    combine_kernel<T><<<grid_for(y.numel()), kThreads, 0, stream_of(ctx)>>>(
        data<T>(y), data<const T>(y_perm), topk_w.ptr<const float>(), slot, y.size(0), y.size(1),
        static_cast<int>(topk_w.size(1)));
  });
  TMT_CUDA_CHECK_LAUNCH();
}

void unpermute_bwd(const Context& ctx, const Tensor& dy_perm, const Tensor& dtopk_w,
                   const Tensor& dy, const Tensor& y_perm, const Tensor& topk_w,
                   const DispatchPlan& plan) {
  const auto assignments = static_cast<int64_t>(plan.slot.size());
  if (assignments == 0) return;
  const int32_t* slot = upload(ctx, plan.slot, "unpermute_bwd");
  const auto blocks = static_cast<unsigned>((assignments + kWarpsPerBlock - 1) / kWarpsPerBlock);
  with_type(dy.dtype, [&](auto zero) {
    using T = decltype(zero);
    combine_bwd_kernel<T><<<blocks, kWarpsPerBlock * 32, 0, stream_of(ctx)>>>(
        data<T>(dy_perm), dtopk_w.ptr<float>(), data<const T>(dy), data<const T>(y_perm),
        topk_w.ptr<const float>(), slot, assignments, dy.size(1), static_cast<int>(topk_w.size(1)));
  });
  TMT_CUDA_CHECK_LAUNCH();
}

}  // namespace tmt::cuda
