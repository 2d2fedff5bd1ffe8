#include "kernels/copy.h"

#include <cstring>

#if TMT_WITH_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace tmt {

void copy(const Context& ctx, const Tensor& dst, const Tensor& src) {
  TMT_CHECK(dst.dtype == src.dtype && dst.numel() == src.numel() && dst.device == src.device,
            "copy {} -> {}", src.str(), dst.str());
  if (src.nbytes() == 0 || dst.data == src.data) return;
  if (ctx.device == Device::kCpu) {
    std::memcpy(dst.data, src.data, src.nbytes());
    return;
  }
#if TMT_WITH_CUDA
  cuda::copy_async(dst.data, src.data, src.nbytes(), ctx.stream);
#else
  TMT_CHECK(false, "copy on {}: this build has no CUDA backend", device_name(ctx.device));
#endif
}

}  // namespace tmt
