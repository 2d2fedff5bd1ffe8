// Loss spikes (train.spike_zscore): a step whose loss stands far above the recent ones.
//
// The statistics are the mean m and the sample standard deviation s of the losses of the last
// kWindow applied steps (steps that were skipped do not count). Until the window is full the
// detector only collects (the warm-up: the first kWindow applied steps of a run, and again after a
// resume, since the window is not in the checkpoint). Then the z-score of a loss L is
// (L − m) / max(s, 1e-8 · max(1, |m|)); a step whose z-score exceeds the threshold is a spike. Only
// losses above the mean count: a loss that drops is never a spike. Every rank holds the same
// reduced loss, so every rank decides alike.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>

namespace tmt {

class LossSpikes {
 public:
  static constexpr int64_t kWindow = 50;

  // The loss's z-score against the window, nullopt during the warm-up (or for a non-finite loss).
  std::optional<double> zscore(double loss) const;
  // Adds an applied step's loss to the window (dropping the oldest once it holds kWindow).
  void add(double loss);

 private:
  std::deque<double> recent_;
};

}  // namespace tmt
