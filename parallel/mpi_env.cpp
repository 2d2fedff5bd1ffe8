#include "parallel/mpi_env.h"

#include <mpi.h>

#include <climits>
#include <cstdio>
#include <cstdlib>

#include "kernels/base/check.h"

namespace tmt {

int launcher_rank() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (const char* v = std::getenv(var)) return std::atoi(v);
  }
  return 0;
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

MpiEnvironment::MpiEnvironment(int* argc, char*** argv) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &world_);
  set_process_identity(rank_, world_);
  set_fatal_hook([] { MPI_Abort(MPI_COMM_WORLD, 1); });
}

MpiEnvironment::~MpiEnvironment() {
  set_fatal_hook(nullptr);
  MPI_Finalize();
}

int agree_on_setup(const std::function<void()>& setup) {
  std::string message;
  int failed_rank = INT_MAX;
  try {
    setup();
  } catch (const InputError& e) {
    message = e.what();
    failed_rank = process_rank();
  }
  int first_failed = INT_MAX;
  MPI_Allreduce(&failed_rank, &first_failed, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first_failed == INT_MAX) return 0;
  if (first_failed == process_rank()) {
    std::fprintf(stderr, "error: %s\n", message.c_str());
    std::fflush(stderr);
  }
  return 2;
}

}  // namespace tmt
