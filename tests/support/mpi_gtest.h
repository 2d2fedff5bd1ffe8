// GoogleTest under mpirun, for the test programs' main()s (mpi_main.cpp, cuda_mpi_main.cpp).
#pragma once

namespace tmt::test {

// MPI_Init, this rank's identity for messages, fatal errors that abort every rank.
void start_mpi(int* argc, char*** argv);

// Every rank runs every test; only rank 0 prints the test log, the others only their failures.
// Returns the worst result over the ranks (collective), then finalizes MPI.
int run_tests_on_every_rank(int* argc, char** argv);

}  // namespace tmt::test
