// The Communicator over NCCL: collectives on device tensors, one GPU per rank.
//
// Bootstrapped over MPI: rank 0 of the MPI group makes the NCCL unique id and broadcasts it, and
// every split makes the NCCL sub-communicator (ncclCommSplit) beside the MPI one. Collectives on
// device tensors are enqueued on the stream given at creation (stream-ordered: they return before
// the GPU has done them; the next kernel on that stream sees the result); all_to_all_v is a group
// of ncclSend/ncclRecv. Calls with a host tensor among their tensors (loss sums, counts, the
// scalar all-reduces, a checkpoint's gathered moments) go through the MPI twin, which stages the
// device ones, so callers need not care which kind of tensor they hold.
//
// Point to point (send, recv, isend: the pipeline's activations and gradients) also goes through
// the MPI twin for now. A NCCL send or receive blocks its stream until the peer's matching call
// runs, and the 1F1B schedule interleaves sends and receives differently on neighbouring stages
// (stage s sends two activations before it receives the first gradient while stage s+1 receives
// one and sends one), so they must be paired into one NCCL group per schedule step before they
// can move to NCCL without deadlocking.
//
// The watchdog (parallel/watchdog.h): each collective it queues is followed by an event; the oldest
// one not yet reached is offered to the watchdog as pending work, so a collective that the GPU
// never finishes (a peer stopped) ends the job after the deadline like a blocked MPI call; each
// communicator registers ncclCommAbort as an abort hook, run before MPI_Abort. Built and compiled
// with the CUDA backend only; the CPU tests cover the MPI side.
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
