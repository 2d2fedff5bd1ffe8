// Learning-rate schedules at their defining points.
#include "trainer/optim/lr_schedule.h"

#include <gtest/gtest.h>

#include <cmath>

namespace tmt {
namespace {

Recipe recipe(LrDecay decay) {
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
  const Recipe r = recipe(LrDecay::kCosine);
  EXPECT_DOUBLE_EQ(learning_rate(r, 0), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(r, 4), 0.5);
  EXPECT_DOUBLE_EQ(learning_rate(r, 9), 1.0);
}

TEST(LrSchedule, Decays) {
  // after warmup, p = (step - 10) / 100
  EXPECT_DOUBLE_EQ(learning_rate(recipe(LrDecay::kCosine), 10), 1.0);
  EXPECT_NEAR(learning_rate(recipe(LrDecay::kCosine), 60), 0.1 + 0.9 * 0.5, 1e-12);  // p = 1/2
  EXPECT_NEAR(learning_rate(recipe(LrDecay::kCosine), 35),
              0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI / 4)), 1e-12);
  EXPECT_NEAR(learning_rate(recipe(LrDecay::kLinear), 85), 1.0 - 0.9 * 0.75, 1e-12);
  EXPECT_DOUBLE_EQ(learning_rate(recipe(LrDecay::kConstant), 100), 1.0);
  // wsd: decay over the last 22 steps (20% of 110), from step 88
  EXPECT_DOUBLE_EQ(learning_rate(recipe(LrDecay::kWsd), 87), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(recipe(LrDecay::kWsd), 88), 1.0);
  EXPECT_NEAR(learning_rate(recipe(LrDecay::kWsd), 99), 1.0 - 0.9 * 0.5, 1e-12);
}

TEST(LrSchedule, AWarmupLongerThanTheRunNeverReachesThePeak) {
  Recipe r = recipe(LrDecay::kCosine);
  r.schedule.warmup_steps = 50;
  r.train.steps = 10;
  for (int64_t step = 0; step < r.train.steps; ++step) {
    EXPECT_DOUBLE_EQ(learning_rate(r, step), static_cast<double>(step + 1) / 50.0) << step;
  }
  // And the recipe reader takes it (the default recipe's warmup is longer than 10 steps).
  const Recipe tiny = load_recipe("", {"train.steps=10"});
  EXPECT_GT(tiny.schedule.warmup_steps, tiny.train.steps);
}

}  // namespace
}  // namespace tmt
