#include "kernels/reduce.h"

#include "kernels/base/profiler.h"
#include "kernels/cpu/reduce.h"
#if TMT_WITH_CUDA
#include "kernels/cuda/reduce.h"
#endif

namespace tmt {
namespace {

// f32|f64 on the CPU; f32|f64|bf16 on CUDA.
void check_tensor(const char* op, const Context& ctx, const Tensor& x) {
  const bool dtype_ok = x.dtype == DType::kF32 || x.dtype == DType::kF64 ||
                        (ctx.device == Device::kCuda && x.dtype == DType::kBF16);
  TMT_CHECK(dtype_ok && x.device == ctx.device, "{}: {} must be f32|f64 (or bf16 on cuda) on {}",
            op, x.str(), device_name(ctx.device));
}

// Costs, per element: sum_squares 2 FLOPs, reads x; scale 1, reads and writes x; add 2, reads x
// and reads and writes y.
double elements(const Tensor& x) { return static_cast<double>(x.numel()); }

}  // namespace

size_t sum_squares_workspace_bytes(Device device) {
  if (device == Device::kCpu) return 0;
#if TMT_WITH_CUDA
  return cuda::sum_squares_workspace_bytes();
#else
  TMT_CHECK(false, "sum_squares_workspace_bytes: this build has no CUDA backend");
  return 0;
#endif
}

double sum_squares(const Context& ctx, const Tensor& x) {
  check_tensor("sum_squares", ctx, x);
  const ProfileScope scope(ctx, "sum_squares", {2 * elements(x), bytes_of(x)});
  if (ctx.device == Device::kCpu) return cpu::sum_squares(x);
#if TMT_WITH_CUDA
  return cuda::sum_squares(ctx, x);
#else
  TMT_CHECK(false, "sum_squares: this build has no CUDA backend");
  return 0.0;
#endif
}

void scale(const Context& ctx, const Tensor& x, double alpha) {
  check_tensor("scale", ctx, x);
  const ProfileScope scope(ctx, "scale", {elements(x), 2 * bytes_of(x)});
  if (ctx.device == Device::kCpu) return cpu::scale(x, alpha);
#if TMT_WITH_CUDA
  return cuda::scale(ctx, x, alpha);
#else
  TMT_CHECK(false, "scale: this build has no CUDA backend");
#endif
}

void add(const Context& ctx, const Tensor& y, const Tensor& x, double alpha) {
  check_tensor("add", ctx, y);
  check_tensor("add", ctx, x);
  TMT_CHECK(x.numel() == y.numel() && x.dtype == y.dtype, "add: {} += {}: numel or dtype differ",
            y.str(), x.str());
  const ProfileScope scope(ctx, "add", {2 * elements(x), bytes_of(x) + 2 * bytes_of(y)});
  if (ctx.device == Device::kCpu) return cpu::add(y, x, alpha);
#if TMT_WITH_CUDA
  return cuda::add(ctx, y, x, alpha);
#else
  TMT_CHECK(false, "add: this build has no CUDA backend");
#endif
}

}  // namespace tmt
