#include "kernels/copy.h"

#include <cstring>

#include "kernels/base/profiler.h"

#if TMT_WITH_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace tmt {
namespace {

#if !TMT_WITH_CUDA
void no_cuda(const char* op, const Context& ctx) {
  TMT_CHECK(false, "{} on {}: this build has no CUDA backend", op, device_name(ctx.device));
}
#endif

}  // namespace

void copy(const Context& ctx, const Tensor& dst, const Tensor& src) {
  TMT_CHECK(dst.dtype == src.dtype && dst.numel() == src.numel() && dst.device == src.device,
            "copy {} -> {}", src.str(), dst.str());
  if (src.nbytes() == 0 || dst.data == src.data) return;
  const ProfileScope scope(ctx, "copy", {0, 2 * bytes_of(src)});
  if (ctx.device == Device::kCpu) {
    std::memcpy(dst.data, src.data, src.nbytes());
    return;
  }
#if TMT_WITH_CUDA
  cuda::copy_async(dst.data, src.data, src.nbytes(), ctx.stream);
#else
  no_cuda("copy", ctx);
#endif
}

void copy_to_host(const Context& ctx, void* dst, const Tensor& src) {
  TMT_CHECK(src.device == ctx.device, "copy_to_host: {} is not on {}", src.str(),
            device_name(ctx.device));
  if (src.nbytes() == 0) return;
  const ProfileScope scope(ctx, "copy_to_host", {0, 2 * bytes_of(src)});
  if (ctx.device == Device::kCpu) {
    std::memcpy(dst, src.data, src.nbytes());
    return;
  }
#if TMT_WITH_CUDA
  cuda::synchronize(ctx.stream);
  cuda::copy(dst, src.data, src.nbytes());
#else
  no_cuda("copy_to_host", ctx);
#endif
}

void copy_from_host(const Context& ctx, const Tensor& dst, const void* src) {
  TMT_CHECK(dst.device == ctx.device, "copy_from_host: {} is not on {}", dst.str(),
            device_name(ctx.device));
  if (dst.nbytes() == 0) return;
  const ProfileScope scope(ctx, "copy_from_host", {0, 2 * bytes_of(dst)});
  if (ctx.device == Device::kCpu) {
    std::memcpy(dst.data, src, dst.nbytes());
    return;
  }
#if TMT_WITH_CUDA
  // The device may still be reading dst for earlier work on the stream.
  cuda::synchronize(ctx.stream);
  cuda::copy(dst.data, src, dst.nbytes());
#else
  no_cuda("copy_from_host", ctx);
#endif
}

void zero(const Context& ctx, const Tensor& t) {
  TMT_CHECK(t.device == ctx.device, "zero: {} is not on {}", t.str(), device_name(ctx.device));
  if (t.nbytes() == 0) return;
  const ProfileScope scope(ctx, "zero", {0, bytes_of(t)});
  if (ctx.device == Device::kCpu) {
    std::memset(t.data, 0, t.nbytes());
    return;
  }
#if TMT_WITH_CUDA
  cuda::memset_zero(t.data, t.nbytes(), ctx.stream);
#else
  no_cuda("zero", ctx);
#endif
}

void synchronize(const Context& ctx) {
  if (ctx.device == Device::kCpu) return;
#if TMT_WITH_CUDA
  cuda::synchronize(ctx.stream);
#else
  no_cuda("synchronize", ctx);
#endif
}

}  // namespace tmt
