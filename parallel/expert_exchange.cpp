#include "parallel/expert_exchange.h"

#include "kernels/copy.h"
#include "kernels/reduce.h"

namespace tmt {

ExpertExchange::ExpertExchange(Communicator* group, int64_t etp, int64_t n_experts)
    : group_(group), ranks_(group != nullptr ? group->size() : 1), etp_(etp), experts_(n_experts) {
  TMT_CHECK(etp >= 1 && ranks_ % etp == 0, "etp {} over a group of {}", etp, ranks_);
  const int64_t ep = ranks_ / etp;
  TMT_CHECK(n_experts % ep == 0, "{} experts over {} expert-parallel ranks", n_experts, ep);
  local_experts_ = n_experts / ep;
  const int64_t j = group != nullptr ? group->rank() : 0;
  etp_rank_ = j % etp;
  first_expert_ = (j / etp) * local_experts_;
}

void ExpertExchange::plan(const std::vector<int64_t>& counts) {
  TMT_CHECK(static_cast<int64_t>(counts.size()) == experts_, "{} counts for {} experts",
            counts.size(), experts_);
  const int64_t ep = ranks_ / etp_, l = local_experts_;
  block_rows_.assign(static_cast<size_t>(ep), 0);
  block_first_.assign(static_cast<size_t>(ep), 0);
  sent_ = 0;
  for (int64_t e = 0; e < experts_; ++e) {
    block_rows_[static_cast<size_t>(e / l)] += counts[static_cast<size_t>(e)];
    sent_ += counts[static_cast<size_t>(e)];
  }
  for (int64_t q = 1; q < ep; ++q) {
    block_first_[static_cast<size_t>(q)] =
        block_first_[static_cast<size_t>(q - 1)] + block_rows_[static_cast<size_t>(q - 1)];
  }
  // Destination j = t + etp · q gets block q (the same rows for every t).
  send_rows_.assign(static_cast<size_t>(ranks_), 0);
  send_first_.assign(static_cast<size_t>(ranks_), 0);
  std::vector<int64_t> count_first(static_cast<size_t>(ranks_)), count_rows(count_first.size(), l);
  for (int64_t j = 0; j < ranks_; ++j) {
    send_rows_[static_cast<size_t>(j)] = block_rows_[static_cast<size_t>(j / etp_)];
    send_first_[static_cast<size_t>(j)] = block_first_[static_cast<size_t>(j / etp_)];
    count_first[static_cast<size_t>(j)] = (j / etp_) * l;
  }
  // got_[src · L + e]: rows source src sends to local expert e.
  got_.assign(static_cast<size_t>(ranks_ * l), 0);
  if (ranks_ > 1) {
    std::vector<int64_t> mine(counts);
    Tensor out{got_.data(), DType::kI64, Device::kCpu, Shape{ranks_ * l}};
    Tensor in{mine.data(), DType::kI64, Device::kCpu, Shape{experts_}};
    group_->all_to_all_v(out, count_rows, in, count_rows, count_first);
  } else {
    got_ = counts;
  }
  recv_rows_.assign(static_cast<size_t>(ranks_), 0);
  local_counts_.assign(static_cast<size_t>(l), 0);
  for (int64_t src = 0; src < ranks_; ++src) {
    for (int64_t e = 0; e < l; ++e) {
      const int64_t c = got_[static_cast<size_t>(src * l + e)];
      recv_rows_[static_cast<size_t>(src)] += c;
      local_counts_[static_cast<size_t>(e)] += c;
    }
  }
  received_ = 0;
  for (int64_t r : recv_rows_) received_ += r;
  // reorder_.src_token[i]: the received row that becomes expert-major row i; slot[] is the inverse.
  reorder_.src_token.clear();
  reorder_.slot.assign(static_cast<size_t>(received_), -1);
  int64_t src_begin = 0;
  std::vector<int64_t> first_row(static_cast<size_t>(ranks_ * l));
  for (int64_t src = 0; src < ranks_; ++src) {
    int64_t row = src_begin;
    for (int64_t e = 0; e < l; ++e) {
      first_row[static_cast<size_t>(src * l + e)] = row;
      row += got_[static_cast<size_t>(src * l + e)];
    }
    src_begin += recv_rows_[static_cast<size_t>(src)];
  }
  for (int64_t e = 0; e < l; ++e) {
    for (int64_t src = 0; src < ranks_; ++src) {
      const int64_t begin = first_row[static_cast<size_t>(src * l + e)];
      for (int64_t i = 0; i < got_[static_cast<size_t>(src * l + e)]; ++i) {
        reorder_.slot[static_cast<size_t>(begin + i)] =
            static_cast<int32_t>(reorder_.src_token.size());
        reorder_.src_token.push_back(static_cast<int32_t>(begin + i));
      }
    }
  }
  reorder_.counts = local_counts_;
}

int64_t ExpertExchange::rows_sent() const {
  int64_t rows = 0;
  for (const int64_t n : send_rows_) rows += n;
  return rows;
}

void ExpertExchange::to_experts(const Context& ctx, const Tensor& expert_major,
                                const Tensor& received, const Tensor& sent) {
  dispatched_bytes_ = 0;
  if (ranks_ > 1) {
    group_->all_to_all_v(received, recv_rows_, sent, send_rows_, send_first_);
    dispatched_bytes_ = rows_sent() * sent.size(1) * static_cast<int64_t>(dtype_size(sent.dtype));
  } else {
    copy(ctx, received, sent);
  }
  permute_fwd(ctx, expert_major, received, reorder_);
}

void ExpertExchange::to_experts_fp8(const Context& ctx, const Tensor& expert_major,
                                    const Tensor& received, const Tensor& sent,
                                    const Tensor& packed_received, const Tensor& packed_sent,
                                    const Fp8Recipe& recipe) {
  dispatched_bytes_ = 0;
  if (ranks_ > 1) {
    fp8_pack_rows(ctx, packed_sent, sent, recipe);
    group_->all_to_all_v(packed_received, recv_rows_, packed_sent, send_rows_, send_first_);
    fp8_unpack_rows(ctx, received, packed_received, recipe);
    dispatched_bytes_ = rows_sent() * packed_sent.size(1);
  } else {
    fp8_quantize_rows(ctx, received, sent, recipe);
  }
  permute_fwd(ctx, expert_major, received, reorder_);
}

void ExpertExchange::from_experts(const Context& ctx, const Tensor& sent, const Tensor& returned,
                                  const Tensor& received, const Tensor& expert_major) {
  permute_bwd(ctx, received, expert_major, reorder_);
  if (ranks_ == 1) return copy(ctx, sent, received);
  if (etp_ == 1) return group_->all_to_all_v(sent, send_rows_, received, recv_rows_);
  // Block q comes back once from each of its etp ranks (hidden slices), one after the other.
  group_->all_to_all_v(returned, send_rows_, received, recv_rows_);
  int64_t row = 0;
  for (size_t q = 0; q < block_rows_.size(); ++q) {
    const int64_t n = block_rows_[q], first = block_first_[q];
    const Tensor out = sent.slice(first, first + n);
    copy(ctx, out, returned.slice(row, row + n));
    for (int64_t t = 1; t < etp_; ++t)
      add(ctx, out, returned.slice(row + t * n, row + (t + 1) * n));
    row += etp_ * n;
  }
}

}  // namespace tmt
