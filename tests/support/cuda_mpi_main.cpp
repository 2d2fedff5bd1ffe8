// main() for tests that run several ranks on the GPUs of one machine (several may share one GPU,
// the MPI communicator staging device tensors through host memory). Without a GPU every rank says
// so and exits 77 ("Not Run" to ctest, whose mpirun passes the status on); with one, as
// mpi_main.cpp: every rank runs every test and the exit status is the worst over the ranks.
#include <mpi.h>

#include <cstdio>
#include <string>

#include "kernels/cuda/runtime.h"
#include "parallel/mpi_env.h"
#include "tests/support/mpi_gtest.h"

int main(int argc, char** argv) {
  tmt::test::start_mpi(&argc, &argv);
  std::string why;
  const int gpus = tmt::cuda::device_count(&why);
  int fewest = gpus;  // every rank must see a GPU, or all skip together
  MPI_Allreduce(&gpus, &fewest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (fewest == 0) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) std::printf("SKIPPED: needs a CUDA GPU (%s)\n", why.c_str());
    MPI_Finalize();
    return 77;
  }
  tmt::cuda::init(tmt::local_rank() % gpus);
  return tmt::test::run_tests_on_every_rank(&argc, argv);
}
