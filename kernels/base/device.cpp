#include "kernels/base/device.h"

#include "kernels/base/arena.h"
#include "kernels/base/check.h"

#if TMT_WITH_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace tmt {

int usable_gpus(std::string* why) {
#if TMT_WITH_CUDA
  return cuda::device_count(why);
#else
  if (why != nullptr) *why = "this build has no CUDA backend (configure with -DTMT_CUDA=ON)";
  return 0;
#endif
}

Context open_device(Device device, int ordinal) {
  Context ctx;
  if (device != Device::kCuda) return ctx;
  std::string why;
  const int gpus = usable_gpus(&why);
  TMT_CHECK(gpus > 0, "train.device = cuda but no GPU: {}", why);
#if TMT_WITH_CUDA
  cuda::init(ordinal % gpus);
  ctx.device = Device::kCuda;
#else
  (void)ordinal;
#endif
  return ctx;
}

std::string bound_gpu_uuid() {
#if TMT_WITH_CUDA
  if (has_device_allocator(Device::kCuda)) return cuda::current_device_uuid();
#endif
  return "";
}

size_t bound_gpu_memory_used() {
#if TMT_WITH_CUDA
  if (has_device_allocator(Device::kCuda)) return cuda::device_memory_used();
#endif
  return 0;
}

}  // namespace tmt
