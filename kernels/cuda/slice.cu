// slice on CUDA (formulas in kernels/slice.h): one thread per moved element of dst, R · width of
// them, consecutive threads along a row's block so reads and writes coalesce; the group's sum and
// the accumulation in fp32, rounded once to the element type.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/slice.h"

namespace tmt::cuda {
namespace {

template <class T>
__global__ void move_kernel(T* dst, const T* src, int64_t n, int64_t width, int64_t dst_stride,
                            int64_t dst_col, int64_t src_stride, int64_t src_col, int64_t repeat,
                            int64_t group, bool accumulate) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int64_t r = i / width, j = i % width;
    const T* first = src + (r / repeat) * group * src_stride + src_col + j;
    float sum = 0.0f;
    for (int64_t g = 0; g < group; ++g) sum += to_math(first[g * src_stride]);
    T* out = dst + r * dst_stride + dst_col + j;
    *out = from_math<T>(accumulate ? to_math(*out) + sum : sum);
  }
}

template <class T>
void move_as(const Context& ctx, const Tensor& dst, const Tensor& src, const ColumnBlock& b,
             int64_t repeat, int64_t group, bool accumulate) {
  const int64_t n = dst.size(0) * b.width;
  move_kernel<T><<<grid_for(n), kThreads, 0, stream_of(ctx)>>>(
      static_cast<T*>(dst.data), static_cast<const T*>(src.data), n, b.width, dst.size(1),
      b.dst_col, src.size(1), b.src_col, repeat, group, accumulate);
  TMT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void move_columns(const Context& ctx, const Tensor& dst, const Tensor& src, const ColumnBlock& b,
                  int64_t repeat, int64_t group, bool accumulate) {
  if (dst.size(0) == 0 || b.width == 0) return;
  if (dst.dtype == DType::kBF16) return move_as<bf16>(ctx, dst, src, b, repeat, group, accumulate);
  move_as<float>(ctx, dst, src, b, repeat, group, accumulate);
}

}  // namespace tmt::cuda
