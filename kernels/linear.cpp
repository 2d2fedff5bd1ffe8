#include "kernels/linear.h"

#include <climits>

#include "kernels/base/profiler.h"
#include "kernels/cpu/linear.h"
#if TMT_WITH_CUDA
#include "kernels/cuda/linear.h"
#endif

namespace tmt {
namespace {

// x [T, K], weight [N, K], y [T, N]: one dtype (f32|f64 on the CPU, f32|bf16 on CUDA), one
// device, sizes BLAS can index.
void check_args(const char* op, const Context& ctx, const Tensor& y, const Tensor& x,
                const Tensor& weight) {
  TMT_CHECK(x.rank() == 2 && weight.rank() == 2 && y.rank() == 2 && x.size(1) == weight.size(1) &&
                y.size(0) == x.size(0) && y.size(1) == weight.size(0),
            "{}: x {}, weight {}, y {} are not [T, K], [N, K], [T, N]", op, x.str(), weight.str(),
            y.str());
  const bool dtype_ok = x.dtype == DType::kF32 ||
                        x.dtype == (ctx.device == Device::kCpu ? DType::kF64 : DType::kBF16);
  // On CUDA a bf16 product may be written in f32 (the router's logits, rounded only once).
  const bool y_ok = y.dtype == x.dtype || (x.dtype == DType::kBF16 && y.dtype == DType::kF32);
  TMT_CHECK(dtype_ok && weight.dtype == x.dtype && y_ok,
            "{}: x {}, weight {}, y {} must share a dtype (f32|f64 on cpu, f32|bf16 on cuda; "
            "bf16 x and weight may give an f32 y)",
            op, x.str(), weight.str(), y.str());
  TMT_CHECK(x.device == ctx.device && weight.device == ctx.device && y.device == ctx.device,
            "{}: x {}, weight {}, y {} not all on {}", op, x.str(), weight.str(), y.str(),
            device_name(ctx.device));
  TMT_CHECK(x.size(0) <= INT_MAX && x.size(1) <= INT_MAX && weight.size(0) <= INT_MAX,
            "{}: x {}, weight {} too large for 32-bit BLAS indices", op, x.str(), weight.str());
}

// `f32_ok`: the gradient may be f32 where `of` is bf16 (dweight on CUDA).
void check_like(const char* op, const Tensor& grad, const Tensor& of, const char* name,
                bool f32_ok = false) {
  const bool dtype_ok =
      grad.dtype == of.dtype || (f32_ok && of.dtype == DType::kBF16 && grad.dtype == DType::kF32);
  TMT_CHECK(grad.shape == of.shape && dtype_ok && grad.device == of.device,
            "{}: d{} {} does not match {} {}", op, name, grad.str(), name, of.str());
}

// Costs: 2·T·N·K FLOPs a product; each operand read once, each output written once (and read
// when accumulated: y with accumulate, dx with accumulate_dx, dweight always).
double products(const Tensor& x, const Tensor& weight) {
  return static_cast<double>(x.size(0)) * static_cast<double>(weight.size(0)) *
         static_cast<double>(x.size(1));
}

OpCost fwd_cost(const Tensor& y, const Tensor& x, const Tensor& weight, bool accumulate) {
  return {2 * products(x, weight), bytes_of(x, weight) + (accumulate ? 2 : 1) * bytes_of(y)};
}

OpCost bwd_cost(const Tensor& dx, const Tensor& dweight, const Tensor& dy, const Tensor& x,
                const Tensor& weight, bool accumulate_dx) {
  OpCost c{0, bytes_of(dy)};
  if (dx.defined()) {
    c.flops += 2 * products(x, weight);
    c.bytes += bytes_of(weight) + (accumulate_dx ? 2 : 1) * bytes_of(dx);
  }
  if (dweight.defined()) {
    c.flops += 2 * products(x, weight);
    c.bytes += bytes_of(x) + 2 * bytes_of(dweight);
  }
  return c;
}

}  // namespace

size_t linear_workspace_bytes(Device device) {
  if (device == Device::kCpu) return 0;
#if TMT_WITH_CUDA
  return cuda::linear_workspace_bytes();
#else
  TMT_CHECK(false, "linear_workspace_bytes: this build has no CUDA backend");
  return 0;
#endif
}

void linear_fwd(const Context& ctx, const Tensor& y, const Tensor& x, const Tensor& weight,
                bool accumulate) {
  check_args("linear_fwd", ctx, y, x, weight);
  const ProfileScope scope(ctx, "linear_fwd", fwd_cost(y, x, weight, accumulate));
  if (ctx.device == Device::kCpu) return cpu::linear_fwd(y, x, weight, accumulate);
#if TMT_WITH_CUDA
  return cuda::linear_fwd(ctx, y, x, weight, accumulate);
#else
  TMT_CHECK(false, "linear_fwd: this build has no CUDA backend");
#endif
}

void linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                const Tensor& x, const Tensor& weight, bool accumulate_dx) {
  check_args("linear_bwd", ctx, dy, x, weight);
  if (dx.defined()) check_like("linear_bwd", dx, x, "x");
  if (dweight.defined()) {
    check_like("linear_bwd", dweight, weight, "weight", ctx.device == Device::kCuda);
  }
  const ProfileScope scope(ctx, "linear_bwd", bwd_cost(dx, dweight, dy, x, weight, accumulate_dx));
  if (ctx.device == Device::kCpu) return cpu::linear_bwd(dx, dweight, dy, x, weight, accumulate_dx);
#if TMT_WITH_CUDA
  return cuda::linear_bwd(ctx, dx, dweight, dy, x, weight, accumulate_dx);
#else
  TMT_CHECK(false, "linear_bwd: this build has no CUDA backend");
#endif
}

}  // namespace tmt
