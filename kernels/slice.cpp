#include "kernels/slice.h"

#include "kernels/base/profiler.h"
#include "kernels/cpu/slice.h"
#if TMT_WITH_CUDA
#include "kernels/cuda/slice.h"
#endif

namespace tmt {
namespace {

// dst [R, A] and src [src_rows, B] on ctx.device, one dtype (f32|f64 on the CPU, f32|bf16 on
// CUDA), the block inside both.
void check_args(const char* op, const Context& ctx, const Tensor& dst, const Tensor& src,
                const ColumnBlock& b, int64_t src_rows) {
  TMT_CHECK(dst.rank() == 2 && src.rank() == 2 && src.size(0) == src_rows,
            "{}: dst {}, src {} (src needs {} rows)", op, dst.str(), src.str(), src_rows);
  const bool dtype_ok = dst.dtype == DType::kF32 ||
                        dst.dtype == (ctx.device == Device::kCpu ? DType::kF64 : DType::kBF16);
  TMT_CHECK(dtype_ok && dst.dtype == src.dtype,
            "{}: dst {}, src {} must share a dtype (f32|f64 on cpu, f32|bf16 on cuda)", op,
            dst.str(), src.str());
  TMT_CHECK(b.width >= 0 && b.dst_col >= 0 && b.src_col >= 0 &&
                b.dst_col + b.width <= dst.size(1) && b.src_col + b.width <= src.size(1),
            "{}: columns [{}, +{}) of dst {} from [{}, +{}) of src {}", op, b.dst_col, b.width,
            dst.str(), b.src_col, b.width, src.str());
  TMT_CHECK(dst.device == ctx.device && src.device == ctx.device, "{}: tensors not all on {}", op,
            device_name(ctx.device));
}

// Per moved element of dst: one read of each summed source element and one write (two when
// accumulated).
OpCost cost(const Tensor& dst, const ColumnBlock& b, int64_t group, bool accumulate) {
  const double moved = static_cast<double>(dst.size(0) * b.width);
  const double size = static_cast<double>(dtype_size(dst.dtype));
  return {moved * static_cast<double>(group - 1),
          moved * size * static_cast<double>(group + (accumulate ? 2 : 1))};
}

}  // namespace

void copy_columns(const Context& ctx, const Tensor& dst, const Tensor& src, const ColumnBlock& b,
                  int64_t repeat, bool accumulate) {
  TMT_CHECK(repeat >= 1 && dst.rank() == 2 && dst.size(0) % repeat == 0,
            "copy_columns: repeat {} does not divide the rows of dst {}", repeat, dst.str());
  check_args("copy_columns", ctx, dst, src, b, dst.size(0) / repeat);
  const ProfileScope scope(ctx, "copy_columns", cost(dst, b, 1, accumulate));
  if (ctx.device == Device::kCpu) return cpu::copy_columns(dst, src, b, repeat, accumulate);
#if TMT_WITH_CUDA
  return cuda::move_columns(ctx, dst, src, b, repeat, /*group=*/1, accumulate);
#else
  TMT_CHECK(false, "copy_columns: this build has no CUDA backend");
#endif
}

void sum_columns(const Context& ctx, const Tensor& dst, const Tensor& src, const ColumnBlock& b,
                 int64_t group, bool accumulate) {
  TMT_CHECK(group >= 1 && dst.rank() == 2, "sum_columns: group {} for dst {}", group, dst.str());
  check_args("sum_columns", ctx, dst, src, b, dst.size(0) * group);
  const ProfileScope scope(ctx, "sum_columns", cost(dst, b, group, accumulate));
  if (ctx.device == Device::kCpu) return cpu::sum_columns(dst, src, b, group, accumulate);
#if TMT_WITH_CUDA
  return cuda::move_columns(ctx, dst, src, b, /*repeat=*/1, group, accumulate);
#else
  TMT_CHECK(false, "sum_columns: this build has no CUDA backend");
#endif
}

}  // namespace tmt
