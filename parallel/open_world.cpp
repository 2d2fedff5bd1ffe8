#include "parallel/open_world.h"

#include <unistd.h>

#include <algorithm>
#include <climits>

#include "kernels/base/check.h"
#include "kernels/base/device.h"
#include "kernels/base/log.h"
#include "parallel/nccl_comm.h"

namespace tmt {

bool gpus_shared(Communicator& world) {
  // Two ranks share a GPU when they run on one host and are bound to the same device, told apart
  // by its UUID: under per-task binding (srun --gpus-per-task, CUDA_VISIBLE_DEVICES per rank) every
  // rank sees one GPU as ordinal 0, yet they are all different.
  char host[HOST_NAME_MAX + 1] = {};
  gethostname(host, sizeof(host) - 1);
  const std::string mine = std::string(host) + "/" + bound_gpu_uuid();
  std::vector<std::string> all = all_gather_strings(world, mine);
  std::sort(all.begin(), all.end());
  const bool shared = std::adjacent_find(all.begin(), all.end()) != all.end();
  return shared;  // every rank saw the same list
}

std::unique_ptr<Communicator> open_world(CommKind kind, const std::string& origin,
                                         Communicator& mpi, const Context& ctx) {
  if (ctx.device != Device::kCuda || kind == CommKind::kMpi) return mpi.split(0, mpi.rank());
  if (gpus_shared(mpi)) {
    if (kind == CommKind::kNccl) {
      input_error(
          "{}: parallel.comm: nccl needs a GPU per rank, but ranks share GPUs here "
          "(NCCL refuses two ranks on one GPU); use auto or mpi",
          origin);
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
