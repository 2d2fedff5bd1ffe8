// Learning-rate schedules at their defining points.
#include "trainer/optim/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>

namespace tmt {
namespace {

Recipe recipe(const std::string& decay) {
  Recipe r;
  r.optimizer.lr = 1.0;
  r.schedule.min_lr = 0.1;
  r.schedule.warmup_steps = 10;
  r.schedule.decay = decay;
  r.schedule.wsd_decay_fraction = 0.2;
  r.train.steps = 110;
  return r;
}

TEST(LrSchedule, WarmupIsLinearFromOneStepIn) {
  const Recipe r = recipe("cosine");
  EXPECT_DOUBLE_EQ(learning_rate(r, 0), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(r, 4), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate(r, 9), 1.0);
}

TEST(LrSchedule, Decays) {
  // after warmup, p = (step - 10) / 100
  EXPECT_DOUBLE_EQ(learning_rate(recipe("cosine"), 10), 1.0);
  EXPECT_NEAR(learning_rate(recipe("cosine"), 60), 0.1 + 0.9 * 0.5, 1e-12);  // p = 1/2
  EXPECT_NEAR(learning_rate(recipe("cosine"), 35), 0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI / 4)),
              1e-12);
  EXPECT_NEAR(learning_rate(recipe("linear"), 85), 1.0 - 0.9 * 0.75, 1e-12);
  EXPECT_DOUBLE_EQ(learning_rate(recipe("constant"), 100), 1.0);
  // wsd: decay over the last 22 steps (20% of 110), from step 88
  EXPECT_DOUBLE_EQ(learning_rate(recipe("wsd"), 87), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(recipe("wsd"), 88), 1.0);
  EXPECT_NEAR(learning_rate(recipe("wsd"), 99), 1.0 - 0.9 * 0.5, 1e-12);
}

}  // namespace
}  // namespace tmt
