#include "trainer/optim/loss_spike.h"

#include <algorithm>
#include <cmath>

namespace tmt {

std::optional<double> LossSpikes::zscore(double loss) const {
  if (static_cast<int64_t>(recent_.size()) < kWindow || !std::isfinite(loss)) return std::nullopt;
  double mean = 0;
  for (double x : recent_) mean += x;
  mean /= static_cast<double>(recent_.size());
  double var = 0;
  for (double x : recent_) var += (x - mean) * (x - mean);
  var /= static_cast<double>(recent_.size() - 1);
  const double sd = std::max(std::sqrt(var), 1e-8 * std::max(1.0, std::abs(mean)));
  return (loss - mean) / sd;
}

void LossSpikes::add(double loss) {
  if (!std::isfinite(loss)) return;
  recent_.push_back(loss);
  if (static_cast<int64_t>(recent_.size()) > kWindow) recent_.pop_front();
}

}  // namespace tmt
