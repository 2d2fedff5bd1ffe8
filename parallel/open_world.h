// The communicator every parallel group is split from: MPI, or NCCL when each rank has a GPU of its
// own.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "kernels/base/context.h"
#include "parallel/comm.h"

namespace tmt {

// How the groups communicate (the recipe's parallel.comm).
enum class CommKind : uint8_t {
  kAuto,  // NCCL when training on GPUs and no two ranks share one, else MPI
  kNccl,
  kMpi,  // device tensors staged through host memory: slow, for ranks sharing a GPU
};

// Whether two ranks on one host are bound to the same GPU (by UUID; after open_device). Collective
// over `world`; every rank gets the same answer.
bool gpus_shared(Communicator& world);

// Collective over `mpi`, after open_device: NCCL over mpi's ranks for a CUDA context when `kind`
// is kNccl, or kAuto and no GPU is shared; otherwise MPI. NCCL with shared GPUs is bad input
// (InputError, raised on every rank alike, naming parallel.comm at `origin`). Logs which it chose.
std::unique_ptr<Communicator> open_world(CommKind kind, const std::string& origin,
                                         Communicator& mpi, const Context& ctx);

}  // namespace tmt
