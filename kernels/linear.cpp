#include "kernels/linear.h"

#include <climits>

#include "kernels/cpu/linear.h"

namespace tmt {
namespace {

// x [T, K], weight [N, K], y [T, N]: one dtype (f32|f64), one device, sizes BLAS can index.
void check_args(const char* op, const Context& ctx, const Tensor& y, const Tensor& x,
                const Tensor& weight) {
  TMT_CHECK(x.rank() == 2 && weight.rank() == 2 && y.rank() == 2 && x.size(1) == weight.size(1) &&
                y.size(0) == x.size(0) && y.size(1) == weight.size(0),
            "{}: x {}, weight {}, y {} are not [T, K], [N, K], [T, N]", op, x.str(), weight.str(),
            y.str());
  TMT_CHECK((x.dtype == DType::kF32 || x.dtype == DType::kF64) && weight.dtype == x.dtype &&
                y.dtype == x.dtype,
            "{}: x {}, weight {}, y {} must share a dtype, f32 or f64", op, x.str(), weight.str(),
            y.str());
  TMT_CHECK(x.device == ctx.device && weight.device == ctx.device && y.device == ctx.device,
            "{}: x {}, weight {}, y {} not all on {}", op, x.str(), weight.str(), y.str(),
            device_name(ctx.device));
  TMT_CHECK(x.size(0) <= INT_MAX && x.size(1) <= INT_MAX && weight.size(0) <= INT_MAX,
            "{}: x {}, weight {} too large for 32-bit BLAS indices", op, x.str(), weight.str());
}

void check_like(const char* op, const Tensor& grad, const Tensor& of, const char* name) {
  TMT_CHECK(grad.shape == of.shape && grad.dtype == of.dtype && grad.device == of.device,
            "{}: d{} {} does not match {} {}", op, name, grad.str(), name, of.str());
}

}  // namespace

void linear_fwd(const Context& ctx, const Tensor& y, const Tensor& x, const Tensor& weight,
                bool accumulate) {
  check_args("linear_fwd", ctx, y, x, weight);
  if (ctx.device == Device::kCpu) return cpu::linear_fwd(y, x, weight, accumulate);
  TMT_CHECK(false, "linear_fwd: no CUDA implementation yet");
}

void linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                const Tensor& x, const Tensor& weight, bool accumulate_dx) {
  check_args("linear_bwd", ctx, dy, x, weight);
  if (dx.defined()) check_like("linear_bwd", dx, x, "x");
  if (dweight.defined()) check_like("linear_bwd", dweight, weight, "weight");
  if (ctx.device == Device::kCpu) return cpu::linear_bwd(dx, dweight, dy, x, weight, accumulate_dx);
  TMT_CHECK(false, "linear_bwd: no CUDA implementation yet");
}

}  // namespace tmt
