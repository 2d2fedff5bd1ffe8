// The Communicator over NCCL: collectives on device tensors, one GPU per rank.
//
// Bootstrapped over MPI: rank 0 of the MPI group makes the NCCL unique id and broadcasts it, and
// every split makes the NCCL sub-communicator (ncclCommSplit) beside the MPI one. Collectives on
// device tensors are enqueued on the stream given at creation (stream-ordered: they return before
// the GPU has done them; the next kernel on that stream sees the result); all_to_all_v is a group
// of ncclSend/ncclRecv. Host tensors (loss sums, counts, the scalar all-reduces) go through the
// MPI twin, so callers need not care which kind of tensor they hold. isend enqueues on a second
// stream and wait() blocks until the send is done.
//
// NCCL refuses two ranks of one communicator on the same GPU: tests that run several ranks on one
// GPU use the MPI communicator, which stages device tensors through host memory.
#pragma once

#include <memory>

#include "parallel/comm.h"

namespace tmt {

// Whether this build has NCCL (the CUDA backend).
bool nccl_built();

// A NCCL communicator over the ranks of `mpi` (collective over it), ordered like it, enqueueing on
// `stream` (a cudaStream_t; null = the default stream). The calling process must already have its
// GPU selected (cuda::init).
std::unique_ptr<Communicator> nccl_communicator(const Communicator& mpi, void* stream);

}  // namespace tmt
