// reduce on CUDA: sum of squares (deterministic, accumulated in double), scale, add.
//
//   sum_squares: kPartials blocks each sum a fixed grid-stride share of x in double, into the
//                caller's workspace (Context::workspace); one block then adds the partial sums in
//                a fixed tree. The partition depends only on x.numel(), so the result has the same
//                bits on every run and every GPU.
//   scale:       x[i] *= alpha              (in place)
//   add:         y[i] += alpha * x[i]       (accumulated)
// f32 and bf16 compute in float, f64 in double.
#include "kernels/base/workspace.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/reduce.h"

namespace tmt::cuda {
namespace {

constexpr int kPartials = 512;  // blocks of the first pass, and threads of the second

template <class T>
__global__ void sum_squares_partial(double* partial, const T* x, int64_t n) {
  double s = 0.0;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const double v = to_math(x[i]);
    s += v * v;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// One block of kPartials threads: partial[0] = sum of partial[0 .. kPartials).
__global__ void sum_partials(double* partial) {
  const double s = block_sum(partial[threadIdx.x]);
  if (threadIdx.x == 0) partial[0] = s;
}

template <class T>
__global__ void scale_kernel(T* x, Math<T> alpha, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    x[i] = from_math<T>(to_math(x[i]) * alpha);
  }
}

template <class T>
__global__ void add_kernel(T* y, const T* x, Math<T> alpha, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    y[i] = from_math<T>(to_math(y[i]) + alpha * to_math(x[i]));
  }
}

template <class T>
double sum_squares_as(const Context& ctx, const Tensor& x) {
  double* partial = workspace_for<double>(ctx, sum_squares_workspace_bytes(), "sum_squares");
  sum_squares_partial<T><<<kPartials, kThreads, 0, stream_of(ctx)>>>(
      partial, static_cast<const T*>(x.data), x.numel());
  TMT_CUDA_CHECK_LAUNCH();
  sum_partials<<<1, kPartials, 0, stream_of(ctx)>>>(partial);
  TMT_CUDA_CHECK_LAUNCH();
  double result = 0.0;
  TMT_CUDA_CHECK(
      cudaMemcpyAsync(&result, partial, sizeof(double), cudaMemcpyDeviceToHost, stream_of(ctx)));
  TMT_CUDA_CHECK(cudaStreamSynchronize(stream_of(ctx)));
  return result;
}

template <class T>
void scale_as(const Context& ctx, const Tensor& x, double alpha) {
  const int64_t n = x.numel();
  scale_kernel<T><<<grid_for(n), kThreads, 0, stream_of(ctx)>>>(static_cast<T*>(x.data),
                                                                static_cast<Math<T>>(alpha), n);
  TMT_CUDA_CHECK_LAUNCH();
}

template <class T>
void add_as(const Context& ctx, const Tensor& y, const Tensor& x, double alpha) {
  const int64_t n = x.numel();
  add_kernel<T><<<grid_for(n), kThreads, 0, stream_of(ctx)>>>(
      static_cast<T*>(y.data), static_cast<const T*>(x.data), static_cast<Math<T>>(alpha), n);
  TMT_CUDA_CHECK_LAUNCH();
}

}  // namespace

size_t sum_squares_workspace_bytes() { return kPartials * sizeof(double); }

// The dispatch (kernels/reduce.cpp) has checked the dtype: f32 is the remaining case.
double sum_squares(const Context& ctx, const Tensor& x) {
  if (x.numel() == 0) return 0.0;
  switch (x.dtype) {
    case DType::kF64:
      return sum_squares_as<double>(ctx, x);
    case DType::kBF16:
      return sum_squares_as<bf16>(ctx, x);
    default:
      return sum_squares_as<float>(ctx, x);
  }
}

void scale(const Context& ctx, const Tensor& x, double alpha) {
  if (x.numel() == 0) return;
  switch (x.dtype) {
    case DType::kF64:
      return scale_as<double>(ctx, x, alpha);
    case DType::kBF16:
      return scale_as<bf16>(ctx, x, alpha);
    default:
      return scale_as<float>(ctx, x, alpha);
  }
}

void add(const Context& ctx, const Tensor& y, const Tensor& x, double alpha) {
  if (x.numel() == 0) return;
  switch (x.dtype) {
    case DType::kF64:
      return add_as<double>(ctx, y, x, alpha);
    case DType::kBF16:
      return add_as<bf16>(ctx, y, x, alpha);
    default:
      return add_as<float>(ctx, y, x, alpha);
  }
}

}  // namespace tmt::cuda
