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
  char host[HOST_NAME_MAX + 1] = {};
  gethostname(host, sizeof(host) - 1);
  const std::vector<std::string> hosts = all_gather_strings(world, host);
  const auto here = std::count(hosts.begin(), hosts.end(), std::string(host));
  const bool mine = here > usable_gpus(nullptr);
  return world.all_reduce_scalar(mine ? 1.0 : 0.0, ReduceOp::kMax) > 0;
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
