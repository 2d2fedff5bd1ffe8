// Setup agreement under mpirun: when any rank finds bad input, every rank returns 2 and none is
// left waiting; when none does, every rank goes on.
//
// ranks: 1 2 3 4
#include "parallel/mpi_env.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include "kernels/base/check.h"

namespace tmt {
namespace {

int world_min(int v) {
  int out = 0;
  MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return out;
}

TEST(AgreeOnSetup, AllRanksGoOnWhenNoneFails) {
  int ran = 0;
  const int status = agree_on_setup([&] { ran = 1; });
  EXPECT_EQ(status, 0);
  EXPECT_EQ(world_min(ran), 1);
}

TEST(AgreeOnSetup, OneFailingRankStopsEveryRank) {
  for (int bad = 0; bad < process_world(); ++bad) {
    const int status = agree_on_setup([&] {
      if (process_rank() == bad) input_error("rank {} found bad input", bad);
    });
    EXPECT_EQ(status, 2) << "bad rank " << bad;
    EXPECT_EQ(world_min(status == 2 ? 1 : 0), 1);
  }
}

TEST(AgreeOnSetup, EveryRankFailingAlikeReportsOnce) {
  const int status = agree_on_setup([] { input_error("the same bad recipe on every rank"); });
  EXPECT_EQ(status, 2);
}

}  // namespace
}  // namespace tmt
