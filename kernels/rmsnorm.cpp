#include "kernels/rmsnorm.h"

#include "kernels/cpu/rmsnorm.h"

namespace tmt {
namespace {

bool is_f32_or_f64(DType t) { return t == DType::kF32 || t == DType::kF64; }

// x and every [T, D] / [D] tensor in `same`: one dtype, matching shapes; rstd [T]; all on
// ctx.device.
void check_args(const char* op, const Context& ctx, const Tensor& x, const Tensor& weight,
                const Tensor& rstd, std::initializer_list<const Tensor*> like_x,
                const Tensor& like_weight) {
  TMT_CHECK(x.rank() == 2 && weight.rank() == 1 && weight.size(0) == x.size(1) &&
                rstd.rank() == 1 && rstd.size(0) == x.size(0),
            "{}: x {}, weight {}, rstd {}", op, x.str(), weight.str(), rstd.str());
  TMT_CHECK(is_f32_or_f64(x.dtype) && weight.dtype == x.dtype && is_f32_or_f64(rstd.dtype),
            "{}: x {}, weight {} must share a dtype (f32|f64); rstd {} f32|f64", op, x.str(),
            weight.str(), rstd.str());
  TMT_CHECK(like_weight.shape == weight.shape && like_weight.dtype == weight.dtype,
            "{}: {} does not match weight {}", op, like_weight.str(), weight.str());
  TMT_CHECK(x.device == ctx.device && weight.device == ctx.device && rstd.device == ctx.device &&
                like_weight.device == ctx.device,
            "{}: tensors not all on {}", op, device_name(ctx.device));
  for (const Tensor* t : like_x) {
    TMT_CHECK(t->shape == x.shape && t->dtype == x.dtype && t->device == ctx.device,
              "{}: {} does not match x {}", op, t->str(), x.str());
  }
}

}  // namespace

void rmsnorm_fwd(const Context& ctx, const Tensor& y, const Tensor& rstd, const Tensor& x,
                 const Tensor& weight, double eps) {
  check_args("rmsnorm_fwd", ctx, x, weight, rstd, {&y}, weight);
  TMT_CHECK(eps >= 0.0, "rmsnorm_fwd: eps {} < 0", eps);
  if (ctx.device == Device::kCpu) return cpu::rmsnorm_fwd(y, rstd, x, weight, eps);
  TMT_CHECK(false, "rmsnorm_fwd: no CUDA implementation yet");
}

void rmsnorm_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                 const Tensor& x, const Tensor& weight, const Tensor& rstd) {
  check_args("rmsnorm_bwd", ctx, x, weight, rstd, {&dx, &dy}, dweight);
  if (ctx.device == Device::kCpu) return cpu::rmsnorm_bwd(dx, dweight, dy, x, weight, rstd);
  TMT_CHECK(false, "rmsnorm_bwd: no CUDA implementation yet");
}

}  // namespace tmt
