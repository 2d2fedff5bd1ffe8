#include "kernels/swiglu.h"

#include "kernels/base/profiler.h"
#include "kernels/cpu/swiglu.h"
#if TMT_WITH_CUDA
#include "kernels/cuda/swiglu.h"
#endif

namespace tmt {
namespace {

// gu [T, 2F] and h [T, F]: one dtype (f32|f64 on the CPU, f32|bf16 on CUDA), on ctx.device.
void check_args(const char* op, const Context& ctx, const Tensor& h, const Tensor& gu) {
  TMT_CHECK(
      gu.rank() == 2 && h.rank() == 2 && gu.size(0) == h.size(0) && gu.size(1) == 2 * h.size(1),
      "{}: gu {} and h {} must be [T, 2F] and [T, F]", op, gu.str(), h.str());
  const bool dtype_ok = gu.dtype == DType::kF32 ||
                        gu.dtype == (ctx.device == Device::kCpu ? DType::kF64 : DType::kBF16);
  TMT_CHECK(dtype_ok && h.dtype == gu.dtype,
            "{}: gu {} and h {} must share a dtype (f32|f64 on cpu, f32|bf16 on cuda)", op,
            gu.str(), h.str());
  TMT_CHECK(gu.device == ctx.device && h.device == ctx.device, "{}: gu {}, h {} not on {}", op,
            gu.str(), h.str(), device_name(ctx.device));
}

// Costs, per element of h [T, F]: forward ≈ 5 FLOPs (the sigmoid's exp, sum and division, two
// products), backward ≈ 10; bytes: every tensor once.
double elements(const Tensor& h) { return static_cast<double>(h.numel()); }

}  // namespace

void swiglu_fwd(const Context& ctx, const Tensor& h, const Tensor& gu) {
  check_args("swiglu_fwd", ctx, h, gu);
  const ProfileScope scope(ctx, "swiglu_fwd", {5 * elements(h), bytes_of(gu, h)});
  if (ctx.device == Device::kCpu) return cpu::swiglu_fwd(h, gu);
#if TMT_WITH_CUDA
  return cuda::swiglu_fwd(ctx, h, gu);
#else
  TMT_CHECK(false, "swiglu_fwd: this build has no CUDA backend");
#endif
}

void swiglu_bwd(const Context& ctx, const Tensor& dgu, const Tensor& dh, const Tensor& gu) {
  check_args("swiglu_bwd", ctx, dh, gu);
  TMT_CHECK(dgu.shape == gu.shape && dgu.dtype == gu.dtype && dgu.device == gu.device,
            "swiglu_bwd: dgu {} does not match gu {}", dgu.str(), gu.str());
  const ProfileScope scope(ctx, "swiglu_bwd", {10 * elements(dh), bytes_of(dh, gu, dgu)});
  if (ctx.device == Device::kCpu) return cpu::swiglu_bwd(dgu, dh, gu);
#if TMT_WITH_CUDA
  return cuda::swiglu_bwd(ctx, dgu, dh, gu);
#else
  TMT_CHECK(false, "swiglu_bwd: this build has no CUDA backend");
#endif
}

}  // namespace tmt
