#include "parallel/mpi_env.h"

#include <mpi.h>
#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/base/check.h"
#include "parallel/watchdog.h"

namespace tmt {
namespace {

int g_local_rank = -1;  // from MPI, once it has started
int g_cpu_threads = 0;

// The share of this rank's CPUs described in cpu_threads(), over the ranks of `node`.
int cpu_share(MPI_Comm node) {
  int size = 1;
  MPI_Comm_size(node, &size);
  cpu_set_t mine;
  CPU_ZERO(&mine);
  if (sched_getaffinity(0, sizeof(mine), &mine) != 0) return 1;
  std::vector<cpu_set_t> all(static_cast<size_t>(size));
  MPI_Allgather(&mine, sizeof(cpu_set_t), MPI_BYTE, all.data(), sizeof(cpu_set_t), MPI_BYTE, node);
  double share = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &mine)) continue;
    int users = 0;
    for (const cpu_set_t& other : all) users += CPU_ISSET(cpu, &other) ? 1 : 0;
    share += 1.0 / users;
  }
  return std::max(1, static_cast<int>(share + 1e-9));
}

}  // namespace

int launcher_rank() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (const char* v = std::getenv(var)) return std::atoi(v);
  }
  return 0;
}

int local_rank() {
  if (g_local_rank >= 0) return g_local_rank;
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
  set_fatal_hook([](int status) { MPI_Abort(MPI_COMM_WORLD, status); });
  MPI_Comm node = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &g_local_rank);
  g_cpu_threads = cpu_share(node);
  MPI_Comm_free(&node);
  if (std::getenv("OMP_NUM_THREADS") == nullptr) omp_set_num_threads(g_cpu_threads);
}

int cpu_threads() { return g_cpu_threads > 0 ? g_cpu_threads : omp_get_max_threads(); }

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
  const InCollective mark("all_reduce (agreeing on the setup)", "world");
  MPI_Allreduce(&failed_rank, &first_failed, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first_failed == INT_MAX) return 0;
  if (first_failed == process_rank()) {
    std::fprintf(stderr, "error: %s\n", message.c_str());
    std::fflush(stderr);
  }
  return 2;
}

}  // namespace tmt
