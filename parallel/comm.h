// Communicator: the collectives the trainer needs, on tensors, within one process group.
//
// One interface, two implementations: MPI on the CPU (mpi_comm.cpp) and NCCL on GPUs. Every call is
// collective over the group unless it says otherwise, and blocking: when it returns, the result is
// in place. Sums are elementwise; sizes are in elements of the tensors' dtype (f32, f64, i32, i64).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/base/tensor.h"

namespace tmt {

enum class ReduceOp : uint8_t { kSum, kMax, kMin };

// A send in flight (Communicator::isend): its tensor must stay untouched until wait() returns.
class SendRequest {
 public:
  virtual ~SendRequest() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // t = op over the group of t (in place).
  virtual void all_reduce(const Tensor& t, ReduceOp op = ReduceOp::kSum) = 0;
  // in: size() equal chunks; out (one chunk) = the sum over the group of chunk rank() of in.
  virtual void reduce_scatter(const Tensor& out, const Tensor& in) = 0;
  // out: size() chunks, chunk i = rank i's in.
  virtual void all_gather(const Tensor& out, const Tensor& in) = 0;
  // Rows (of the leading dimension) to and from every rank: send_rows[i] rows of in go to rank i,
  // in rank order, or, when send_first is given, the rows from send_first[i] on (blocks may
  // overlap: the same rows can go to several ranks); recv_rows[i] rows from rank i land in out,
  // in rank order.
  virtual void all_to_all_v(const Tensor& out, const std::vector<int64_t>& recv_rows,
                            const Tensor& in, const std::vector<int64_t>& send_rows,
                            const std::vector<int64_t>& send_first = {}) = 0;
  // Point to point (not collective): the peer must make the matching call.
  virtual void send(const Tensor& t, int peer, int tag) = 0;
  virtual void recv(const Tensor& t, int peer, int tag) = 0;
  // A send that returns at once (the pipeline's activations and gradients): messages between two
  // ranks with the same tag arrive in the order they were sent.
  virtual std::unique_ptr<SendRequest> isend(const Tensor& t, int peer, int tag) = 0;
  virtual void broadcast(const Tensor& t, int root) = 0;
  virtual void barrier() = 0;

  // The group of the ranks that pass the same color, ordered by key (collective).
  virtual std::unique_ptr<Communicator> split(int color, int key) const = 0;

  // A scalar reduced over the group.
  double all_reduce_scalar(double v, ReduceOp op = ReduceOp::kSum);

  // The group's name in the watchdog's messages ("dp", "tp", ...: parallel/groups.cpp names them;
  // a string with static storage). A split's group is "world" until it is named.
  const char* name() const { return name_; }
  void set_name(const char* name) { name_ = name; }

 private:
  const char* name_ = "world";
};

// Every rank's string, in rank order (collective over `comm`).
std::vector<std::string> all_gather_strings(Communicator& comm, const std::string& mine);

// All processes of the job (MPI_COMM_WORLD), and this process alone (MPI_COMM_SELF).
std::unique_ptr<Communicator> mpi_world();
std::unique_ptr<Communicator> mpi_self();

}  // namespace tmt
