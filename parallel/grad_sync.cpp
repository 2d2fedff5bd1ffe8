#include "parallel/grad_sync.h"

#include <algorithm>
#include <cmath>

#include "kernels/base/check.h"
#include "kernels/reduce.h"

namespace tmt {

GradSync::GradSync(const Context& ctx, std::vector<GradBucket> buckets, Communicator* tp,
                   Communicator* world, bool zero1)
    : ctx_(ctx), buckets_(std::move(buckets)), world_(world), zero1_(zero1) {
  // One group per distinct count of TP replicas, made in the same order on every TP rank: ranks
  // [c·r, (c+1)·r) of the TP group hold the same block (the whole group when r = tp).
  std::vector<int64_t> counts;
  for (const GradBucket& b : buckets_) {
    if (b.tp_replicas > 1) counts.push_back(b.tp_replicas);
  }
  std::sort(counts.begin(), counts.end());
  counts.erase(std::unique(counts.begin(), counts.end()), counts.end());
  std::vector<std::pair<int64_t, Communicator*>> groups;
  for (int64_t r : counts) {
    TMT_CHECK(tp != nullptr && tp->size() % r == 0,
              "{} tensor-parallel replicas in a TP group of {}", r, tp != nullptr ? tp->size() : 1);
    if (r == tp->size()) {
      groups.emplace_back(r, tp);
    } else {
      tp_groups_.push_back(tp->split(static_cast<int>(tp->rank() / r), tp->rank()));
      groups.emplace_back(r, tp_groups_.back().get());
    }
  }
  size_t bytes = 0;
  for (const GradBucket& b : buckets_) {
    Shard s;
    const int64_t n = b.grads.numel();
    for (const auto& [r, group] : groups) {
      if (r == b.tp_replicas) s.tp_group = group;
    }
    if (zero1_) {
      const int64_t replicas = b.replicas->size();
      TMT_CHECK(n % replicas == 0, "gradient bucket of {} elements does not split over {} ranks", n,
                replicas);
      s.len = n / replicas;
      s.begin = b.replicas->rank() * s.len;
      bytes += Arena::footprint(b.grads.dtype, {s.len});
    } else {
      s.len = n;
      s.summed = b.grads;
    }
    shards_.push_back(s);
  }
  if (zero1_) {
    arena_ = Arena(ctx.device, bytes, "gradient shards");
    for (size_t i = 0; i < shards_.size(); ++i)
      shards_[i].summed = arena_.alloc(buckets_[i].grads.dtype, {shards_[i].len});
  }
}

void GradSync::begin() {
  // First the parts the TP replicas computed from their own tokens, then the data-parallel copies.
  for (size_t i = 0; i < buckets_.size(); ++i) {
    if (shards_[i].tp_group != nullptr) shards_[i].tp_group->all_reduce(buckets_[i].grads);
  }
  for (size_t i = 0; i < buckets_.size(); ++i) {
    if (zero1_) {
      buckets_[i].replicas->reduce_scatter(shards_[i].summed, buckets_[i].grads);
    } else {
      buckets_[i].replicas->all_reduce(buckets_[i].grads);
    }
  }
}

double GradSync::finish() {
  double sq = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    const auto copies =
        static_cast<double>(buckets_[i].tp_replicas * (zero1_ ? 1 : buckets_[i].replicas->size()));
    sq += sum_squares(ctx_, shards_[i].summed) / copies;
  }
  return std::sqrt(world_->all_reduce_scalar(sq));
}

}  // namespace tmt
