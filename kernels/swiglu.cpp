#include "kernels/swiglu.h"

#include "kernels/cpu/swiglu.h"

namespace tmt {
namespace {

// gu [T, 2F] and h [T, F]: one dtype (f32|f64), on ctx.device.
void check_args(const char* op, const Context& ctx, const Tensor& h, const Tensor& gu) {
  TMT_CHECK(
      gu.rank() == 2 && h.rank() == 2 && gu.size(0) == h.size(0) && gu.size(1) == 2 * h.size(1),
      "{}: gu {} and h {} must be [T, 2F] and [T, F]", op, gu.str(), h.str());
  TMT_CHECK((gu.dtype == DType::kF32 || gu.dtype == DType::kF64) && h.dtype == gu.dtype,
            "{}: gu {} and h {} must share a dtype, f32 or f64", op, gu.str(), h.str());
  TMT_CHECK(gu.device == ctx.device && h.device == ctx.device, "{}: gu {}, h {} not on {}", op,
            gu.str(), h.str(), device_name(ctx.device));
}

}  // namespace

void swiglu_fwd(const Context& ctx, const Tensor& h, const Tensor& gu) {
  check_args("swiglu_fwd", ctx, h, gu);
  if (ctx.device == Device::kCpu) return cpu::swiglu_fwd(h, gu);
  TMT_CHECK(false, "swiglu_fwd: no CUDA implementation yet");
}

void swiglu_bwd(const Context& ctx, const Tensor& dgu, const Tensor& dh, const Tensor& gu) {
  check_args("swiglu_bwd", ctx, dh, gu);
  TMT_CHECK(dgu.shape == gu.shape && dgu.dtype == gu.dtype && dgu.device == gu.device,
            "swiglu_bwd: dgu {} does not match gu {}", dgu.str(), gu.str());
  if (ctx.device == Device::kCpu) return cpu::swiglu_bwd(dgu, dh, gu);
  TMT_CHECK(false, "swiglu_bwd: no CUDA implementation yet");
}

}  // namespace tmt
