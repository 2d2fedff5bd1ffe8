#include "parallel/expert_exchange.h"

#include "kernels/copy.h"

namespace tmt {

ExpertExchange::ExpertExchange(Communicator* ep, int64_t n_experts)
    : ep_(ep), ranks_(ep != nullptr ? ep->size() : 1), experts_(n_experts) {
  TMT_CHECK(n_experts % ranks_ == 0, "{} experts over {} expert-parallel ranks", n_experts, ranks_);
  local_experts_ = n_experts / ranks_;
  first_expert_ = (ep != nullptr ? ep->rank() : 0) * local_experts_;
}

void ExpertExchange::plan(const std::vector<int64_t>& counts) {
  TMT_CHECK(static_cast<int64_t>(counts.size()) == experts_, "{} counts for {} experts",
            counts.size(), experts_);
  send_rows_.assign(static_cast<size_t>(ranks_), 0);
  sent_ = 0;
  for (int64_t e = 0; e < experts_; ++e) {
    send_rows_[static_cast<size_t>(e / local_experts_)] += counts[static_cast<size_t>(e)];
    sent_ += counts[static_cast<size_t>(e)];
  }
  // got_[src · L + e]: rows rank src sends to local expert e.
  got_.assign(static_cast<size_t>(ranks_ * local_experts_), 0);
  if (ranks_ > 1) {
    std::vector<int64_t> mine(counts);
    Tensor out{got_.data(), DType::kI64, Device::kCpu, Shape{ranks_ * local_experts_}};
    Tensor in{mine.data(), DType::kI64, Device::kCpu, Shape{experts_}};
    const std::vector<int64_t> each(static_cast<size_t>(ranks_), local_experts_);
    ep_->all_to_all_v(out, each, in, each);
  } else {
    got_ = counts;
  }
  recv_rows_.assign(static_cast<size_t>(ranks_), 0);
  local_counts_.assign(static_cast<size_t>(local_experts_), 0);
  for (int64_t src = 0; src < ranks_; ++src) {
    for (int64_t e = 0; e < local_experts_; ++e) {
      const int64_t c = got_[static_cast<size_t>(src * local_experts_ + e)];
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
  std::vector<int64_t> first_row(static_cast<size_t>(ranks_ * local_experts_));
  for (int64_t src = 0; src < ranks_; ++src) {
    int64_t row = src_begin;
    for (int64_t e = 0; e < local_experts_; ++e) {
      first_row[static_cast<size_t>(src * local_experts_ + e)] = row;
      row += got_[static_cast<size_t>(src * local_experts_ + e)];
    }
    src_begin += recv_rows_[static_cast<size_t>(src)];
  }
  for (int64_t e = 0; e < local_experts_; ++e) {
    for (int64_t src = 0; src < ranks_; ++src) {
      const int64_t begin = first_row[static_cast<size_t>(src * local_experts_ + e)];
      for (int64_t i = 0; i < got_[static_cast<size_t>(src * local_experts_ + e)]; ++i) {
        reorder_.slot[static_cast<size_t>(begin + i)] =
            static_cast<int32_t>(reorder_.src_token.size());
        reorder_.src_token.push_back(static_cast<int32_t>(begin + i));
      }
    }
  }
  reorder_.counts = local_counts_;
}

void ExpertExchange::to_experts(const Context& ctx, const Tensor& expert_major,
                                const Tensor& received, const Tensor& sent) {
  if (ranks_ > 1) {
    ep_->all_to_all_v(received, recv_rows_, sent, send_rows_);
  } else {
    copy(ctx, received, sent);
  }
  permute_fwd(ctx, expert_major, received, reorder_);
}

void ExpertExchange::from_experts(const Context& ctx, const Tensor& sent, const Tensor& received,
                                  const Tensor& expert_major) {
  permute_bwd(ctx, received, expert_major, reorder_);
  if (ranks_ > 1) {
    ep_->all_to_all_v(sent, send_rows_, received, recv_rows_);
  } else {
    copy(ctx, sent, received);
  }
}

}  // namespace tmt
