#include "trainer/device.h"

#include <cstdlib>

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

int local_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"}) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') continue;
    char* end = nullptr;
    const long r = std::strtol(v, &end, 10);
    if (*end == '\0' && r >= 0) return static_cast<int>(r);
  }
  return 0;
}

Context open_device(const Recipe& recipe) {
  Context ctx;
  if (recipe.train.device != "cuda") return ctx;
  std::string why;
  const int gpus = usable_gpus(&why);
  TMT_CHECK(gpus > 0, "train.device = cuda but no GPU: {}", why);
#if TMT_WITH_CUDA
  cuda::init(local_rank() % gpus);
  ctx.device = Device::kCuda;
#endif
  return ctx;
}

}  // namespace tmt
