// Data parallelism computes the same training run as one rank: every rank trains the recipe alone
// (on MPI_COMM_SELF) and together with the others (dp = world size), 10 optimizer steps with
// gradient accumulation, and the two runs' losses (every step) and final parameters must agree to
// fp32 reordering. ranks: 2 3 4 timeout: 300
#include <gtest/gtest.h>

#include <cmath>

#include "tests/support/compare.h"
#include "trainer/trainer.h"

namespace tmt {
namespace {

const char* kRecipe = R"(
model:
  vocab_size: 64
  d_model: 32
  n_layers: 3
  n_heads: 4
  n_kv_heads: 2
  ffn_hidden: 48
  moe:
    n_experts: 4
    top_k: 2
    expert_ffn_hidden: 24
    n_shared_experts: 1
    first_dense_layers: 1
    z_loss_coeff: 0.001
data:
  seq_len: 16
  synthetic:
    branching: 3
optimizer:
  lr: 3.0e-3
schedule:
  warmup_steps: 2
train:
  steps: 10
  global_batch: 24
  micro_batch: 2
  seed: 3
log:
  eval_batches: 5
)";

struct TrainRun {
  std::vector<double> losses;
  std::vector<double> params;
  double val = 0;
};

TrainRun train_steps(const Recipe& recipe, const Communicator& world) {
  const DataSources data = open_data(recipe);
  ParallelEnv env = ParallelEnv::create(world, recipe.parallel);
  Trainer trainer(recipe, data, env);
  TrainRun run;
  for (int i = 0; i < recipe.train.steps; ++i) run.losses.push_back(trainer.step().loss);
  run.val = *trainer.validate();
  for (const Param& p : trainer.model().params().all()) {
    const auto v = test::to_doubles(p.value);
    run.params.insert(run.params.end(), v.begin(), v.end());
  }
  return run;
}

TEST(DataParallel, EqualsOneRank) {
  auto world = mpi_world();
  Recipe solo = parse_recipe(kRecipe, "dp_equivalence", {});
  resolve_layout(solo, 1);
  Recipe parallel = parse_recipe(kRecipe, "dp_equivalence", {});
  resolve_layout(parallel, world->size());
  ASSERT_EQ(parallel.parallel.dp, world->size());

  const TrainRun one = train_steps(solo, *mpi_self());
  const TrainRun many = train_steps(parallel, *world);
  ASSERT_EQ(one.losses.size(), 10u);
  for (size_t s = 0; s < one.losses.size(); ++s) {
    EXPECT_LT(std::fabs(many.losses[s] - one.losses[s]) / one.losses[s], 1e-5)
        << "step " << s + 1 << ": " << many.losses[s] << " vs " << one.losses[s];
  }
  EXPECT_LT(one.losses.back(), one.losses.front() - 0.1)
      << "the run did not learn: the comparison means little";
  EXPECT_TRUE(test::all_close(many.params, one.params, 1e-5)) << "final parameters";
  EXPECT_LT(std::fabs(many.val - one.val) / one.val, 1e-5);
  if (world->rank() == 0) {
    std::printf("  dp%d: loss %.6f -> %.6f, final loss rel diff %.2e\n", world->size(),
                one.losses.front(), one.losses.back(),
                std::fabs(many.losses.back() - one.losses.back()) / one.losses.back());
  }
}

}  // namespace
}  // namespace tmt
