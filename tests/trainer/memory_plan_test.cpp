// The memory plan (trainer/memory_plan.h) sizes a model without allocating it: its figures must be
// the real model's arenas, and they say whether published models fit at their recipes' layouts.
#include "trainer/memory_plan.h"

#include <gtest/gtest.h>

#include "tests/support/small_moe.h"

namespace tmt {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

TEST(MemoryPlan, DryModelHasTheRealModelsSizes) {
  for (const std::vector<std::string>& layout : {std::vector<std::string>{"parallel.pp=1"},
                                                 {"parallel.pp=2"},
                                                 {"parallel.pp=2", "parallel.vpp=2"}}) {
    const std::string pp = fmt::format("{}", fmt::join(layout, " "));
    Recipe r = parse_recipe(test::kSmallMoeRecipe, "small", layout);
    resolve_layout(r, r.parallel.pp);
    const std::vector<StageMemory> plan = plan_memory(r);
    ASSERT_EQ(plan.size(), static_cast<size_t>(r.parallel.pp));
    for (int64_t stage = 0; stage < r.parallel.pp; ++stage) {
      const Model real(r.model, model_run_of(r), Context{},
                       model_shard_of(r, stage, nullptr, nullptr));
      const StageMemory& m = plan[static_cast<size_t>(stage)];
      EXPECT_EQ(m.weights, real.params().values_bytes()) << pp << " stage " << stage;
      EXPECT_EQ(m.grads, real.params().grads_bytes()) << pp << " stage " << stage;
      size_t values = 0;  // the arena holds them and their alignment
      for (const ParamGroup& g : real.params().groups()) values += g.values.nbytes();
      EXPECT_GE(m.weights, values) << pp << " stage " << stage;
      EXPECT_EQ(m.activations, real.activations_arena_bytes()) << pp << " stage " << stage;
      EXPECT_EQ(m.scratch, real.scratch_arena_bytes()) << pp << " stage " << stage;
      EXPECT_EQ(m.expert_rows, real.expert_rows().planned_bytes()) << pp << " stage " << stage;
      EXPECT_GT(m.expert_rows, 0u);
      EXPECT_EQ(m.in_flight, real.in_flight());
      EXPECT_EQ(m.layers.size(), static_cast<size_t>(r.parallel.vpp));
    }
  }
}

// Mixtral 8x7B at its recipe's layout (tp1 pp4 ep8, zero1, 64 ranks): sized for the worst case
// (every assignment of the expert group at every MoE layer and in-flight micro-batch) stage 0
// needed ~227 GiB; planned for the balanced load it fits an 80 GB GPU.
TEST(MemoryPlan, Mixtral8x7bFitsAnH100AtItsRecipeLayout) {
  Recipe r = load_recipe(std::string(TMT_SOURCE_DIR) + "/recipes/mixtral-8x7b.yaml", {});
  resolve_layout(r, 64);
  const std::vector<StageMemory> plan = plan_memory(r);
  ASSERT_EQ(plan.size(), 4u);
  EXPECT_EQ(plan[0].in_flight, 4);
  EXPECT_LT(static_cast<double>(plan[0].total()) / kGiB, 70.0);
  // The expert rows kept for backward: 8 MoE layers x 4 micro-batches x T·K = 8192 rows of
  // (d_model + 3 · expert_ffn_hidden) bf16 values, plus one layer's scratch.
  const double kept = 8.0 * 4 * 8192 * (4096 + 3 * 14336) * 2;
  EXPECT_GT(static_cast<double>(plan[0].expert_rows), kept);
  EXPECT_LT(static_cast<double>(plan[0].expert_rows), kept * 1.1);
}

}  // namespace
}  // namespace tmt
