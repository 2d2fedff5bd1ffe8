// main() for tests that run several ranks on the GPUs of one machine (several may share one GPU,
// the MPI communicator staging device tensors through host memory). Without a GPU every rank says
// so and exits 77 ("Not Run" to ctest, whose mpirun passes the status on); with one, as
// mpi_main.cpp: every rank runs every test and the exit status is the worst over the ranks.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <string>

#include "kernels/base/check.h"
#include "kernels/cuda/runtime.h"
#include "trainer/device.h"

namespace {

class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_,
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  tmt::set_process_identity(rank, world);
  tmt::set_fatal_hook([] { MPI_Abort(MPI_COMM_WORLD, 1); });
  std::string why;
  const int gpus = tmt::cuda::device_count(&why);
  int fewest = gpus;  // every rank must see a GPU, or all skip together
  MPI_Allreduce(&gpus, &fewest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (fewest == 0) {
    if (rank == 0) std::printf("SKIPPED: needs a CUDA GPU (%s)\n", why.c_str());
    MPI_Finalize();
    return 77;
  }
  tmt::cuda::init(tmt::local_rank() % gpus);
  ::testing::InitGoogleTest(&argc, argv);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(rank));
  }
  int local = RUN_ALL_TESTS();
  int worst = 0;
  MPI_Allreduce(&local, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && worst != local) std::fprintf(stderr, "a test failed on another rank\n");
  MPI_Finalize();
  return worst;
}
