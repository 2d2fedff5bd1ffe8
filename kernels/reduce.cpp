#include "kernels/reduce.h"

#include "kernels/cpu/reduce.h"

namespace tmt {
namespace {

void check_tensor(const char* op, const Context& ctx, const Tensor& x) {
  TMT_CHECK((x.dtype == DType::kF32 || x.dtype == DType::kF64) && x.device == ctx.device,
            "{}: {} must be f32|f64 on {}", op, x.str(), device_name(ctx.device));
}

}  // namespace

double sum_squares(const Context& ctx, const Tensor& x) {
  check_tensor("sum_squares", ctx, x);
  if (ctx.device == Device::kCpu) return cpu::sum_squares(x);
  TMT_CHECK(false, "sum_squares: no CUDA implementation yet");
  return 0.0;
}

void scale(const Context& ctx, const Tensor& x, double alpha) {
  check_tensor("scale", ctx, x);
  if (ctx.device == Device::kCpu) return cpu::scale(x, alpha);
  TMT_CHECK(false, "scale: no CUDA implementation yet");
}

void add(const Context& ctx, const Tensor& y, const Tensor& x, double alpha) {
  check_tensor("add", ctx, y);
  check_tensor("add", ctx, x);
  TMT_CHECK(x.numel() == y.numel() && x.dtype == y.dtype, "add: {} += {}: numel or dtype differ",
            y.str(), x.str());
  if (ctx.device == Device::kCpu) return cpu::add(y, x, alpha);
  TMT_CHECK(false, "add: no CUDA implementation yet");
}

}  // namespace tmt
