// ExpertExchange: the all-to-all of expert parallelism.
//
// Rank q of the EP group (size P) holds experts [q·E/P, (q+1)·E/P). A rank's rows arrive grouped by
// global expert (moe_dispatch's plan), so each destination's rows are one contiguous block. plan()
// exchanges the per-expert counts; to_experts() sends the rows and reorders what arrives
// expert-major (for local expert e: rank 0's rows, then rank 1's, ...), ready for the grouped GEMM;
// from_experts() undoes both. The same two moves carry gradients in backward, in the other order.
// With P = 1 both are plain copies.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/base/context.h"
#include "kernels/moe_dispatch.h"
#include "parallel/comm.h"

namespace tmt {

class ExpertExchange {
 public:
  // `ep` may be null: one rank holds every expert.
  ExpertExchange(Communicator* ep, int64_t n_experts);

  int64_t local_experts() const { return local_experts_; }
  int64_t first_expert() const { return first_expert_; }

  // counts: this rank's rows per global expert [E], in order. Collective over the EP group.
  void plan(const std::vector<int64_t>& counts);
  int64_t sent_rows() const { return sent_; }
  int64_t received_rows() const { return received_; }
  const std::vector<int64_t>& local_counts() const {
    return local_counts_;
  }  // rows per local expert

  // sent [sent_rows, D] -> received [received_rows, D] (source order) -> expert_major (same size).
  void to_experts(const Context& ctx, const Tensor& expert_major, const Tensor& received,
                  const Tensor& sent);
  // expert_major -> received (source order) -> sent, back on the ranks the rows came from.
  void from_experts(const Context& ctx, const Tensor& sent, const Tensor& received,
                    const Tensor& expert_major);

 private:
  Communicator* ep_;
  int64_t ranks_, experts_, local_experts_, first_expert_;
  std::vector<int64_t> send_rows_, recv_rows_, local_counts_, got_;
  DispatchPlan reorder_;  // source order <-> expert-major order of the received rows
  int64_t sent_ = 0, received_ = 0;
};

}  // namespace tmt
