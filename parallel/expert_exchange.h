// ExpertExchange: the all-to-all of expert parallelism.
//
// The experts are shared out over a group of etp x ep ranks: rank j = t + etp · q of the group
// holds experts [q·E/ep, (q+1)·E/ep) — all etp ranks with the same q hold the same experts — and,
// of each, the hidden slice t of etp (expert tensor parallelism). A rank's rows arrive grouped by
// global expert (moe_dispatch's plan), so each expert block q is one contiguous range of rows.
// plan() exchanges the per-expert counts; to_experts() sends block q to each of the etp ranks that
// hold it and reorders what arrives expert-major (for local expert e: source 0's rows, then
// source 1's, ...), ready for the grouped GEMM; from_experts() undoes both and, when etp > 1,
// adds up the etp partial results (one per hidden slice) of each row. The same two moves carry
// gradients in backward, in the other order. With one rank both are plain copies.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/base/context.h"
#include "kernels/fp8.h"
#include "kernels/moe_dispatch.h"
#include "parallel/comm.h"

namespace tmt {

class ExpertExchange {
 public:
  // `group` may be null: one rank holds every expert whole.
  ExpertExchange(Communicator* group, int64_t etp, int64_t n_experts);

  int64_t local_experts() const { return local_experts_; }
  int64_t first_expert() const { return first_expert_; }
  int64_t etp() const { return etp_; }
  int64_t etp_rank() const { return etp_rank_; }

  // counts: this rank's rows per global expert [E], in order. Collective over the group.
  void plan(const std::vector<int64_t>& counts);
  int64_t sent_rows() const { return sent_; }
  int64_t received_rows() const { return received_; }
  // Rows of the buffer from_experts() collects the etp partial results in: etp · sent_rows().
  int64_t returned_rows() const { return etp_ * sent_; }
  const std::vector<int64_t>& local_counts() const {
    return local_counts_;
  }  // rows per local expert

  // sent [sent_rows, D] -> received [received_rows, D] (source order) -> expert_major (same size).
  void to_experts(const Context& ctx, const Tensor& expert_major, const Tensor& received,
                  const Tensor& sent);
  // to_experts() with the rows in FP8 on the wire (fp8.dispatch): sent's rows are quantized in the
  // forward's 1 × tile tiles and packed (fp8_pack_rows) into packed_sent [sent_rows, W], the packed
  // rows move into packed_received [received_rows, W], W = fp8_row_bytes(D), and `received` gets
  // their values: fp8_quantize_rows' of the rows sent, whichever rank they come from. With one
  // rank the quantization alone (nothing to pack).
  void to_experts_fp8(const Context& ctx, const Tensor& expert_major, const Tensor& received,
                      const Tensor& sent, const Tensor& packed_received, const Tensor& packed_sent,
                      const Fp8Recipe& recipe);
  // The bytes the last to_experts or to_experts_fp8 handed the all-to-all (every destination's,
  // this rank's own included; 0 with one rank).
  int64_t dispatched_bytes() const { return dispatched_bytes_; }

  // expert_major -> received (source order) -> back on the ranks the rows came from, in
  // `returned` [returned_rows, D] (used only when etp > 1), summed into sent [sent_rows, D].
  void from_experts(const Context& ctx, const Tensor& sent, const Tensor& returned,
                    const Tensor& received, const Tensor& expert_major);

 private:
  Communicator* group_;
  int64_t ranks_, etp_, etp_rank_, experts_, local_experts_, first_expert_;
  std::vector<int64_t> send_rows_, send_first_, recv_rows_, local_counts_, got_;
  std::vector<int64_t> block_rows_, block_first_;  // this rank's rows per expert block q
  DispatchPlan reorder_;  // source order <-> expert-major order of the received rows
  int64_t sent_ = 0, received_ = 0;
  int64_t dispatched_bytes_ = 0;

  int64_t rows_sent() const;  // over every destination (a block goes to each of its etp ranks)
};

}  // namespace tmt
