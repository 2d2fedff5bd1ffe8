#include "trainer/device.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>

#include "kernels/base/check.h"
#include "kernels/base/log.h"
#include "parallel/nccl_comm.h"

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

bool gpus_shared(Communicator& world) {
  char host[HOST_NAME_MAX + 1] = {};
  gethostname(host, sizeof(host) - 1);
  const std::vector<std::string> hosts = all_gather_strings(world, host);
  const auto here = std::count(hosts.begin(), hosts.end(), std::string(host));
  const bool mine = here > usable_gpus(nullptr);
  return world.all_reduce_scalar(mine ? 1.0 : 0.0, ReduceOp::kMax) > 0;
}

std::unique_ptr<Communicator> open_world(const Recipe& r, Communicator& mpi, const Context& ctx) {
  if (r.train.device != "cuda" || r.parallel.comm == "mpi") return mpi.split(0, mpi.rank());
  if (gpus_shared(mpi)) {
    if (r.parallel.comm == "nccl") {
      input_error(
          "{}: parallel.comm: nccl needs a GPU per rank, but ranks share GPUs here "
          "(NCCL refuses two ranks on one GPU); use auto or mpi",
          r.origin_of("parallel.comm"));
    }
    log_info(
        "ranks share GPUs: the parallel groups communicate over MPI, device tensors staged "
        "through host memory (slow; NCCL needs a GPU per rank)");
    return mpi.split(0, mpi.rank());
  }
  log_info("communicating over NCCL ({} ranks, one GPU each)", mpi.size());
  return nccl_communicator(mpi, ctx.stream);
}

}  // namespace tmt
