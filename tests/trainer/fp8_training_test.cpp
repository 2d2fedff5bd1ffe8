// FP8 training on the CPU (train.precision: fp8, kernels/fp8.h) at one rank: the small MoE recipe
// (tests/support/small_moe.h) learns as it does in fp32, its loss within 2% of the fp32 run's
// after 30 steps, and the quantization is really there: from the second step on the losses
// differ from fp32's, and blockwise, tensorwise and MXFP8 scaling differ from each other. Validation
// runs through the same FP8 GEMMs. The 400-step comparison of the tiny recipe is in
// docs/PRECISION.md. With two ranks (ep2): the FP8 dispatch (fp8.dispatch, the rows on the wire
// in e4m3 with their scales) trains exactly as quantizing the same rows in the experts' GEMM does.
//
// ranks: 1 2
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "parallel/comm.h"
#include "tests/support/layout_run.h"
#include "tests/support/small_moe.h"

namespace tmt {
namespace {

test::TrainRun train(const std::vector<std::string>& sets, bool world = false) {
  std::vector<std::string> all = {"train.steps=30"};
  all.insert(all.end(), sets.begin(), sets.end());
  Recipe r = parse_recipe(test::kSmallMoeRecipe, "small_moe", all);
  auto comm = world ? mpi_world() : mpi_self();
  resolve_layout(r, comm->size());
  return test::train_steps(r, *comm, nullptr);
}

TEST(Fp8Training, LearnsWithinTwoPercentOfFp32AndIsNotFp32) {
  if (mpi_world()->size() != 1) GTEST_SKIP() << "one rank's runs";
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

// The dispatched rows cross the ranks packed (fp8_pack_rows) and the experts' first GEMM takes
// them as they arrive; without fp8.dispatch they cross in f32 and that GEMM quantizes them in the
// same 1 x tile tiles: the forward is the same, bit for bit (the first step's loss). Its weight
// gradient then differs a little: it quantizes the dispatched e4m3 values again down the columns
// (the only copy an expert rank has), where the f32 dispatch leaves it the exact rows.
TEST(Fp8Training, ExpertParallelFp8DispatchTrainsAsQuantizingInTheGemm) {
  if (mpi_world()->size() != 2) GTEST_SKIP() << "ep2 runs on 2 ranks";
  for (const char* recipe : {"blockwise", "mxfp8"}) {
    const std::vector<std::string> sets = {"train.steps=8", "train.precision=fp8",
                                           std::string("fp8.recipe=") + recipe, "parallel.ep=2"};
    std::vector<std::string> off = sets;
    off.emplace_back("fp8.dispatch=false");
    const test::TrainRun on = train(sets, true), wire_f32 = train(off, true);
    ASSERT_EQ(on.losses.size(), wire_f32.losses.size());
    EXPECT_EQ(on.losses[0], wire_f32.losses[0]) << recipe << ": the same forward";
    double worst = 0;
    for (size_t i = 0; i < on.losses.size(); ++i) {
      worst = std::max(worst, std::abs(on.losses[i] - wire_f32.losses[i]) / wire_f32.losses[i]);
    }
    EXPECT_LT(worst, 1e-3) << recipe;
    EXPECT_GT(worst, 0) << recipe << ": the weight gradient takes the dispatched values";
    if (mpi_world()->rank() == 0) {
      std::printf("  %s: FP8 dispatch vs f32 dispatch, losses within %.2e (step 1 equal)\n", recipe,
                  worst);
    }
  }
}

}  // namespace
}  // namespace tmt
