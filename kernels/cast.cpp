#include "kernels/cast.h"

#include "kernels/base/profiler.h"
#include "kernels/cpu/cast.h"
#if TMT_WITH_CUDA
#include "kernels/cuda/cast.h"
#endif

namespace tmt {

void cast(const Context& ctx, const Tensor& out, const Tensor& in) {
  TMT_CHECK(out.shape == in.shape && out.device == in.device && out.device == ctx.device,
            "cast {} -> {} on {}", in.str(), out.str(), device_name(ctx.device));
  TMT_CHECK(is_floating(out.dtype) && is_floating(in.dtype), "cast {} -> {}: floating types only",
            in.str(), out.str());
  const ProfileScope scope(ctx, "cast", {0, bytes_of(in, out)});
  if (ctx.device == Device::kCpu) return cpu::cast(out, in);
#if TMT_WITH_CUDA
  TMT_CHECK(cuda::can_cast(out.dtype, in.dtype), "cast {} -> {}: not on CUDA", in.str(), out.str());
  return cuda::cast(ctx, out, in);
#else
  TMT_CHECK(false, "cast on {}: this build has no CUDA backend", device_name(ctx.device));
#endif
}

}  // namespace tmt
