// FP8 training on the CPU (train.precision: fp8, kernels/fp8.h) at one rank: the small MoE recipe
// (tests/support/small_moe.h) learns as it does in fp32, its loss within 2% of the fp32 run's
// after 30 steps, and the quantization is really there: from the second step on the losses
// differ from fp32's, and blockwise, tensorwise and MXFP8 scaling differ from each other. Validation
// runs through the same FP8 GEMMs. The 400-step comparison of the tiny recipe is in
// docs/PRECISION.md.
//
// ranks: 1
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "parallel/comm.h"
#include "tests/support/layout_run.h"
#include "tests/support/small_moe.h"

namespace tmt {
namespace {

test::TrainRun train(const std::vector<std::string>& sets) {
  std::vector<std::string> all = {"train.steps=30"};
  all.insert(all.end(), sets.begin(), sets.end());
  Recipe r = parse_recipe(test::kSmallMoeRecipe, "small_moe", all);
  resolve_layout(r, 1);
  auto self = mpi_self();
  return test::train_steps(r, *self, nullptr);
}

TEST(Fp8Training, LearnsWithinTwoPercentOfFp32AndIsNotFp32) {
  const test::TrainRun fp32 = train({});
  const test::TrainRun blockwise = train({"train.precision=fp8"});
  const test::TrainRun tensorwise = train({"train.precision=fp8", "fp8.recipe=tensorwise"});
  const test::TrainRun pow2 = train({"train.precision=fp8", "fp8.pow2_scales=true"});
  const test::TrainRun mx = train({"train.precision=fp8", "fp8.recipe=mxfp8"});
  for (const auto& [run, name] : {std::pair{&blockwise, "blockwise"},
                                  {&tensorwise, "tensorwise"},
                                  {&pow2, "blockwise, power-of-two scales"},
                                  {&mx, "mxfp8"}}) {
    ASSERT_EQ(run->losses.size(), fp32.losses.size());
    EXPECT_LT(run->losses.back(), run->losses.front() - 0.5) << name << ": it learns";
    const double rel = std::abs(run->losses.back() - fp32.losses.back()) / fp32.losses.back();
    EXPECT_LT(rel, 0.02) << name;
    EXPECT_NE(run->losses[1], fp32.losses[1]) << name << ": quantized from the first step";
    EXPECT_LT(std::abs(run->val - fp32.val) / fp32.val, 0.02) << name << ": validation";
    std::printf("  %s: loss %.6f -> %.6f (fp32 %.6f, %.3f%%), validation %.6f (fp32 %.6f)\n", name,
                run->losses.front(), run->losses.back(), fp32.losses.back(), 100 * rel, run->val,
                fp32.val);
  }
  EXPECT_NE(blockwise.losses.back(), tensorwise.losses.back());
  EXPECT_NE(blockwise.losses.back(), pow2.losses.back());
  EXPECT_NE(blockwise.losses.back(), mx.losses.back());
}

}  // namespace
}  // namespace tmt
