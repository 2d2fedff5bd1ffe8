#include "kernels/rmsnorm.h"

#include "kernels/base/profiler.h"
#include "kernels/cpu/rmsnorm.h"
#if TMT_WITH_CUDA
#include "kernels/cuda/rmsnorm.h"
#endif

namespace tmt {
namespace {

bool is_f32_or_f64(DType t) { return t == DType::kF32 || t == DType::kF64; }

// The element types of x, y, weight: f32|f64 on the CPU, f32|bf16 on CUDA.
bool element_dtype_ok(const Context& ctx, DType t) {
  return ctx.device == Device::kCpu ? is_f32_or_f64(t) : (t == DType::kF32 || t == DType::kBF16);
}

// x and every [T, D] / [D] tensor in `same`: one dtype, matching shapes; rstd [T]; all on
// ctx.device. `like_weight` (y's weight, or dweight) has the weight's dtype, or f32 beside bf16 on
// CUDA when `f32_grad_ok` (fp32 gradient accumulation).
void check_args(const char* op, const Context& ctx, const Tensor& x, const Tensor& weight,
                const Tensor& rstd, std::initializer_list<const Tensor*> like_x,
                const Tensor& like_weight, bool f32_grad_ok = false) {
  TMT_CHECK(x.rank() == 2 && weight.rank() == 1 && weight.size(0) == x.size(1) &&
                rstd.rank() == 1 && rstd.size(0) == x.size(0),
            "{}: x {}, weight {}, rstd {}", op, x.str(), weight.str(), rstd.str());
  TMT_CHECK(element_dtype_ok(ctx, x.dtype) && weight.dtype == x.dtype && is_f32_or_f64(rstd.dtype),
            "{}: x {}, weight {} must share a dtype (f32|f64 on cpu, f32|bf16 on cuda); rstd {} "
            "f32|f64",
            op, x.str(), weight.str(), rstd.str());
  const bool f32_grad = f32_grad_ok && ctx.device == Device::kCuda &&
                        weight.dtype == DType::kBF16 && like_weight.dtype == DType::kF32;
  TMT_CHECK(like_weight.shape == weight.shape && (like_weight.dtype == weight.dtype || f32_grad),
            "{}: {} does not match weight {}", op, like_weight.str(), weight.str());
  TMT_CHECK(x.device == ctx.device && weight.device == ctx.device && rstd.device == ctx.device &&
                like_weight.device == ctx.device,
            "{}: tensors not all on {}", op, device_name(ctx.device));
  for (const Tensor* t : like_x) {
    TMT_CHECK(t->shape == x.shape && t->dtype == x.dtype && t->device == ctx.device,
              "{}: {} does not match x {}", op, t->str(), x.str());
  }
}

// Costs, per element of x [T, D]: forward ≈ 4 FLOPs (square and sum, scale twice); backward ≈ 11
// (the row's dot product, dx, dweight's sum). Bytes: every tensor once, dweight (accumulated)
// twice.
OpCost fwd_cost(const Tensor& y, const Tensor& rstd, const Tensor& x, const Tensor& weight) {
  return {4 * static_cast<double>(x.numel()), bytes_of(x, weight, y, rstd)};
}

OpCost bwd_cost(const Tensor& dx, const Tensor& dweight, const Tensor& dy, const Tensor& x,
                const Tensor& weight, const Tensor& rstd) {
  return {11 * static_cast<double>(x.numel()),
          bytes_of(dy, x, weight, rstd, dx) + 2 * bytes_of(dweight)};
}

}  // namespace

void rmsnorm_fwd(const Context& ctx, const Tensor& y, const Tensor& rstd, const Tensor& x,
                 const Tensor& weight, double eps) {
  check_args("rmsnorm_fwd", ctx, x, weight, rstd, {&y}, weight);
  TMT_CHECK(eps >= 0.0, "rmsnorm_fwd: eps {} < 0", eps);
  const ProfileScope scope(ctx, "rmsnorm_fwd", fwd_cost(y, rstd, x, weight));
  if (ctx.device == Device::kCpu) return cpu::rmsnorm_fwd(y, rstd, x, weight, eps);
#if TMT_WITH_CUDA
  return cuda::rmsnorm_fwd(ctx, y, rstd, x, weight, eps);
#else
  TMT_CHECK(false, "rmsnorm_fwd: this build has no CUDA backend");
#endif
}

void rmsnorm_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                 const Tensor& x, const Tensor& weight, const Tensor& rstd) {
  check_args("rmsnorm_bwd", ctx, x, weight, rstd, {&dx, &dy}, dweight, /*f32_grad_ok=*/true);
  const ProfileScope scope(ctx, "rmsnorm_bwd", bwd_cost(dx, dweight, dy, x, weight, rstd));
  if (ctx.device == Device::kCpu) return cpu::rmsnorm_bwd(dx, dweight, dy, x, weight, rstd);
#if TMT_WITH_CUDA
  return cuda::rmsnorm_bwd(ctx, dx, dweight, dy, x, weight, rstd);
#else
  TMT_CHECK(false, "rmsnorm_bwd: this build has no CUDA backend");
#endif
}

}  // namespace tmt
