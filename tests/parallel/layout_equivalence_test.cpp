// Every supported parallel layout computes the same training run as one rank. Each rank trains the
// recipe alone (on MPI_COMM_SELF) and then together with the others at a layout of the world's
// size: 10 optimizer steps with gradient accumulation; the losses of every step, the validation
// loss and the final parameters (gathered from their shards) must agree to fp32 reordering (< 1e-5
// relative).
//
// ranks: 2 3 4
// timeout: 600
#include <gtest/gtest.h>

#include <cmath>
#include <map>

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
    n_experts: 12
    top_k: 2
    expert_ffn_hidden: 24
    n_shared_experts: 1
    first_dense_layers: 1
    aux_loss_coeff: 0.05
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
  std::map<std::string, std::vector<double>> params;  // global tensors, by name
  double val = 0;
};

// The whole of every parameter: expert shards are gathered over the EP group.
TrainRun train_steps(const Recipe& recipe, const Communicator& world) {
  const DataSources data = open_data(recipe);
  ParallelEnv env = ParallelEnv::create(world, recipe.parallel);
  Trainer trainer(recipe, data, env);
  TrainRun run;
  for (int i = 0; i < recipe.train.steps; ++i) run.losses.push_back(trainer.step().loss);
  run.val = *trainer.validate();
  for (const Param& p : trainer.model().params().all()) {
    std::vector<double> local = test::to_doubles(p.value);
    if (p.spec.local_shape == p.spec.global_shape) {
      run.params[p.spec.name] = local;
      continue;
    }
    std::vector<double> whole(local.size() * static_cast<size_t>(env.ep->size()));
    Tensor in{local.data(), DType::kF64, Device::kCpu, Shape{static_cast<int64_t>(local.size())}};
    Tensor out{whole.data(), DType::kF64, Device::kCpu, Shape{static_cast<int64_t>(whole.size())}};
    env.ep->all_gather(out,
                       in);  // shards are blocks of the leading (expert) dimension, in EP order
    run.params[p.spec.name] = whole;
  }
  return run;
}

void expect_same_run(const std::vector<std::string>& layout) {
  auto world = mpi_world();
  std::string name = "layout";
  for (const auto& s : layout) name += " " + s;
  // The one-rank run shares every setting but the layout.
  std::vector<std::string> model_only;
  for (const auto& s : layout) {
    if (s.rfind("parallel.", 0) != 0) model_only.push_back(s);
  }
  Recipe solo = parse_recipe(kRecipe, name, model_only);
  resolve_layout(solo, 1);
  Recipe parallel = parse_recipe(kRecipe, name, layout);
  resolve_layout(parallel, world->size());

  const TrainRun one = train_steps(solo, *mpi_self());
  const TrainRun many = train_steps(parallel, *world);
  for (size_t s = 0; s < one.losses.size(); ++s) {
    EXPECT_LT(std::fabs(many.losses[s] - one.losses[s]) / one.losses[s], 1e-5)
        << name << ", step " << s + 1 << ": " << many.losses[s] << " vs " << one.losses[s];
  }
  EXPECT_LT(one.losses.back(), one.losses.front() - 0.1)
      << "the run did not learn: the comparison means little";
  EXPECT_LT(std::fabs(many.val - one.val) / one.val, 1e-5) << name;
  ASSERT_EQ(many.params.size(), one.params.size());
  double worst = 0;
  for (const auto& [pname, values] : one.params) {
    EXPECT_TRUE(test::all_close(many.params.at(pname), values, 1e-5)) << name << ": " << pname;
    double d = 0, n = 0;
    for (size_t i = 0; i < values.size(); ++i) {
      d += (many.params.at(pname)[i] - values[i]) * (many.params.at(pname)[i] - values[i]);
      n += values[i] * values[i];
    }
    worst = std::max(worst, std::sqrt(d / n));
  }
  if (world->rank() == 0) {
    std::printf(
        "  %s on %d ranks: loss %.5f -> %.5f, last-step loss rel diff %.1e, worst parameter rel "
        "diff %.1e\n",
        name.c_str(), world->size(), one.losses.front(), one.losses.back(),
        std::fabs(many.losses.back() - one.losses.back()) / one.losses.back(), worst);
  }
}

TEST(LayoutEquivalence, DataParallel) { expect_same_run({}); }  // dp = world size

TEST(LayoutEquivalence, DataAndExpertParallel) {
  // ep = world size: every rank holds its share of the 12 experts
  expect_same_run({"parallel.ep=" + std::to_string(mpi_world()->size())});
}

TEST(LayoutEquivalence, ExpertParallelWithCapacityDropping) {
  // capacity 1.0: each expert takes at most T·K/E assignments per micro-batch and rank, so some
  // drop
  expect_same_run(
      {"parallel.ep=" + std::to_string(mpi_world()->size()), "model.moe.capacity_factor=1.0"});
}

TEST(LayoutEquivalence, ExpertDataParallelWithinExpertGroups) {
  if (mpi_world()->size() != 4) GTEST_SKIP() << "dp4 ep2 needs 4 ranks";
  expect_same_run({"parallel.ep=2"});  // edp = 2: each expert replicated on two ranks
}

TEST(LayoutEquivalence, DistributedOptimizer) { expect_same_run({"parallel.zero1=true"}); }

TEST(LayoutEquivalence, DistributedOptimizerWithExperts) {
  // with 4 ranks: dp4 ep2 (edp 2), so dense state is split 4 ways and expert state 2 ways
  const int n = mpi_world()->size();
  expect_same_run({"parallel.ep=" + std::to_string(n == 4 ? 2 : n), "parallel.zero1=true"});
}

}  // namespace
}  // namespace tmt
