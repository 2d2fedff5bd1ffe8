// main() for tests run under mpirun: every rank runs every test, and the program's exit status is
// the worst over all ranks, so ctest sees a failure on any rank. Only rank 0 prints the test log;
// other ranks print only their failures.
#include "tests/support/mpi_gtest.h"

int main(int argc, char** argv) {
  tmt::test::start_mpi(&argc, &argv);
  return tmt::test::run_tests_on_every_rank(&argc, argv);
}
