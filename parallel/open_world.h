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
  kAuto,  // NCCL when training on GPUs and no node runs more ranks than it has GPUs, else MPI
  kNccl,
  kMpi,  // device tensors staged through host memory: slow, for ranks sharing a GPU
};

// Whether some node runs more ranks than it has usable GPUs, so that ranks share one (collective
// over `world`; every rank gets the same answer).
bool gpus_shared(Communicator& world);

// Collective over `mpi`, after open_device: NCCL over mpi's ranks for a CUDA context when `kind`
// is kNccl, or kAuto and no GPU is shared; otherwise MPI. NCCL with shared GPUs is bad input
// (InputError, raised on every rank alike, naming parallel.comm at `origin`). Logs which it chose.
std::unique_ptr<Communicator> open_world(CommKind kind, const std::string& origin,
                                         Communicator& mpi, const Context& ctx);

}  // namespace tmt
