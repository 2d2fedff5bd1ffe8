// The MPI process environment: init/finalize, this rank's identity for logs and fatal errors, and
// agreement on setup failures so that bad input never leaves a rank waiting in a collective.
#pragma once

#include <functional>
#include <string>

namespace tmt {

// This process's rank as the launcher set it (mpirun, srun), read from the environment before MPI
// starts; 0 when not launched by one. For deciding who prints an error about the command line.
int launcher_rank();

// This process's index among the ranks on its node: which of the node's GPUs it binds. Once MPI
// has started, from MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), which every MPI and launcher
// agrees on; before, OMPI_COMM_WORLD_LOCAL_RANK, else SLURM_LOCALID, else 0.
int local_rank();

// The CPU threads a rank's OpenMP work gets (set by MpiEnvironment unless OMP_NUM_THREADS is
// set): the CPUs of its affinity mask, each shared equally among the ranks of its node whose
// masks include it (at least 1). Ranks bound to cores get their cores; unbound ranks on a node
// split its cores between them.
int cpu_threads();

class MpiEnvironment {
 public:
  // Initialises MPI (thread level FUNNELED), records rank and world for messages, and makes fatal
  // errors call MPI_Abort.
  MpiEnvironment(int* argc, char*** argv);
  ~MpiEnvironment();
  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;

  int rank() const { return rank_; }
  int world() const { return world_; }

 private:
  int rank_ = 0;
  int world_ = 1;
};

// Runs `setup` (which must not communicate) on every rank, then agrees: if it threw InputError on
// any rank, the lowest such rank prints `error: <message>` and every rank gets 2; otherwise 0. Call
// only between MpiEnvironment's construction and destruction, on all ranks.
int agree_on_setup(const std::function<void()>& setup);

}  // namespace tmt
