// The loss-spike detector (train.spike_zscore): silent through its warm-up, then the z-score of a
// loss against the mean and sample standard deviation of the last kWindow added losses.
#include "trainer/optim/loss_spike.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace tmt {
namespace {

// The z-score the header defines, straight from a window's values.
double expected_z(const std::vector<double>& window, double loss) {
  double mean = 0;
  for (double x : window) mean += x;
  mean /= static_cast<double>(window.size());
  double var = 0;
  for (double x : window) var += (x - mean) * (x - mean);
  var /= static_cast<double>(window.size() - 1);
  return (loss - mean) / std::sqrt(var);
}

TEST(LossSpikes, WarmsUpThenScoresAgainstTheLastWindow) {
  std::mt19937 rng(1204);
  std::normal_distribution<double> noise(0.0, 0.05);
  LossSpikes spikes;
  std::vector<double> added;
  for (int64_t i = 0; i < LossSpikes::kWindow; ++i) {
    EXPECT_FALSE(spikes.zscore(3.0).has_value()) << "acted during the warm-up, at " << i;
    const double loss = 4.0 - 0.01 * static_cast<double>(i) + noise(rng);
    spikes.add(loss);
    added.push_back(loss);
  }
  double worst = 0;
  for (int i = 0; i < 200; ++i) {
    const double loss = 3.5 + noise(rng) + (i % 37 == 36 ? 1.0 : 0.0);  // now and then a spike
    const std::vector<double> window(added.end() - LossSpikes::kWindow, added.end());
    const auto z = spikes.zscore(loss);
    ASSERT_TRUE(z.has_value());
    const double want = expected_z(window, loss);
    worst = std::max(worst, std::abs(*z - want) / std::abs(want));
    if (i % 37 == 36) {
      EXPECT_GT(*z, 5.0) << "a jump of 20 standard deviations at " << i;
    } else {
      spikes.add(loss);  // spikes are left out, as the trainer does for skipped steps
      added.push_back(loss);
    }
  }
  EXPECT_LT(worst, 1e-12) << "max relative error of the z-score";
}

TEST(LossSpikes, ConstantLossesAndNonFiniteOnes) {
  LossSpikes spikes;
  for (int64_t i = 0; i < LossSpikes::kWindow; ++i) spikes.add(2.0);
  spikes.add(std::nan(""));  // ignored
  ASSERT_TRUE(spikes.zscore(2.0).has_value());
  EXPECT_EQ(*spikes.zscore(2.0), 0.0);
  // A zero spread is floored at 1e-8 of the mean: any rise is a spike, a fall never is.
  EXPECT_NEAR(*spikes.zscore(2.0 + 2e-6), 100.0, 1e-6);
  EXPECT_LT(*spikes.zscore(1.0), 0.0);
  EXPECT_FALSE(spikes.zscore(std::nan("")).has_value());
}

}  // namespace
}  // namespace tmt
