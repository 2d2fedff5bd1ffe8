// Where training runs: recipe.train.device ("cpu" or "cuda") as a Context, with this process bound
// to its GPU.
#pragma once

#include <memory>
#include <string>

#include "kernels/base/context.h"
#include "parallel/comm.h"
#include "trainer/recipe.h"

namespace tmt {

// GPUs this process can use; 0 with the reason in *why (no driver, no device, or a build without
// the CUDA backend).
int usable_gpus(std::string* why);

// This process's index among the ranks on its node (OMPI_COMM_WORLD_LOCAL_RANK, else
// SLURM_LOCALID, else 0).
int local_rank();

// The context for recipe.train.device. For cuda, binds GPU local_rank() mod usable_gpus() (ranks
// beyond the GPU count share them) and registers its allocator; a missing GPU was refused at
// setup (train_command.cpp), so here it is an internal error.
Context open_device(const Recipe& recipe);

// Whether some node runs more ranks than it has usable GPUs, so that ranks share one (collective
// over `world`; every rank gets the same answer).
bool gpus_shared(Communicator& world);

// The communicator the parallel groups are split from (collective over `mpi`), after
// open_device: NCCL over mpi's ranks for train.device cuda when parallel.comm is nccl, or auto
// and no GPU is shared; otherwise MPI. NCCL with shared GPUs is bad input (InputError naming
// parallel.comm), raised on every rank alike. Logs which it chose.
std::unique_ptr<Communicator> open_world(const Recipe& recipe, Communicator& mpi,
                                         const Context& ctx);

}  // namespace tmt
