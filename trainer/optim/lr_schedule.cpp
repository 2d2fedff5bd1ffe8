#include "trainer/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace tmt {

double learning_rate(const Recipe& r, int64_t step) {
  const double peak = r.optimizer.lr;
  const double floor = r.schedule.min_lr;
  const int64_t warmup = r.schedule.warmup_steps;
  const int64_t steps = r.train.steps;
  if (step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const double span = static_cast<double>(std::max<int64_t>(steps - warmup, 1));
  const double p = std::clamp(static_cast<double>(step - warmup) / span, 0.0, 1.0);
  switch (r.schedule.decay) {
    case LrDecay::kCosine:
      return floor + (peak - floor) * 0.5 * (1.0 + std::cos(M_PI * p));
    case LrDecay::kLinear:
      return peak - (peak - floor) * p;
    case LrDecay::kWsd: {
      const auto decay_steps = static_cast<int64_t>(
          std::ceil(r.schedule.wsd_decay_fraction * static_cast<double>(steps)));
      const int64_t decay_start = std::max(warmup, steps - decay_steps);
      if (step < decay_start) return peak;
      const double q = static_cast<double>(step - decay_start) /
                       static_cast<double>(std::max<int64_t>(steps - decay_start, 1));
      return peak - (peak - floor) * q;
    }
    case LrDecay::kConstant:
      break;
  }
  return peak;
}

}  // namespace tmt
