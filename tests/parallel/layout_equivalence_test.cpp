// Every supported parallel layout computes the same training run as one rank. Each rank trains the
// recipe alone (on MPI_COMM_SELF) and then together with the others at a layout of the world's
// size: 10 optimizer steps with gradient accumulation; the losses of every step, the validation
// loss and the final parameters (gathered from their shards) must agree to fp32 reordering (< 1e-5
// relative).
//
// ranks: 2 3 4 8
// timeout: 900
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "tests/support/compare.h"
#include "tests/support/small_moe.h"
#include "trainer/trainer.h"

namespace tmt {
namespace {

const char* const kRecipe = test::kSmallMoeRecipe;

struct TrainRun {
  std::vector<double> losses;
  std::map<std::string, std::vector<double>> params;  // global tensors, by name
  double val = 0;
};

// Every parameter whole: each rank adds its block (wherever it lies in the global tensor) and a
// count of 1 per element it holds; replicas (data-parallel, tensor-parallel) hold equal values, so
// the sum divided by the count is the tensor. `names` comes from the one-rank model, so every
// rank walks the same list whatever its pipeline stage holds.
std::map<std::string, std::vector<double>> gather_params(const ParamStore& local,
                                                         const ParamStore& whole,
                                                         const Communicator& world) {
  std::map<std::string, std::vector<double>> out;
  for (const Param& w : whole.all()) {
    const auto n = static_cast<size_t>(w.spec.global_shape.numel());
    std::vector<double> sum(2 * n, 0.0);  // values, then counts
    if (const Param* p = local.find(w.spec.name)) {
      const std::vector<double> mine = test::to_doubles(p->value);
      for (size_t i = 0; i < mine.size(); ++i) {
        const auto g = static_cast<size_t>(global_index(p->spec, static_cast<int64_t>(i)));
        sum[g] += mine[i];
        sum[n + g] += 1.0;
      }
    }
    Tensor t{sum.data(), DType::kF64, Device::kCpu, Shape{static_cast<int64_t>(2 * n)}};
    const_cast<Communicator&>(world).all_reduce(t);
    std::vector<double> values(n);
    for (size_t i = 0; i < n; ++i) {
      EXPECT_GT(sum[n + i], 0.0) << w.spec.name << " element " << i << " is on no rank";
      values[i] = sum[i] / std::max(sum[n + i], 1.0);
    }
    out[w.spec.name] = std::move(values);
  }
  return out;
}

TrainRun train_steps(const Recipe& recipe, Communicator& world, const ParamStore* whole) {
  const DataSources data = open_data(recipe);
  ParallelEnv env = ParallelEnv::create(world, recipe.parallel);
  Trainer trainer(recipe, data, env);
  TrainRun run;
  for (int i = 0; i < recipe.train.steps; ++i) run.losses.push_back(trainer.step().loss);
  run.val = *trainer.validate();
  const ParamStore& mine = trainer.model().params();
  run.params = gather_params(mine, whole != nullptr ? *whole : mine, world);
  return run;
}

// One-rank runs, by the settings that are not the layout's (computed once per test program).
struct SoloRun {
  TrainRun run;
  std::unique_ptr<Model> model;  // its parameter list (names, global shapes)
};
std::map<std::string, SoloRun>& solo_runs() {
  static std::map<std::string, SoloRun> runs;
  return runs;
}

void expect_same_run(const std::vector<std::string>& layout) {
  auto world = mpi_world();
  std::string name = "layout";
  for (const auto& s : layout) name += " " + s;
  // The one-rank run shares every setting but the layout.
  std::vector<std::string> model_only;
  std::string key;
  for (const auto& s : layout) {
    if (s.rfind("parallel.", 0) != 0) {
      model_only.push_back(s);
      key += s + ";";
    }
  }
  Recipe parallel = parse_recipe(kRecipe, name, layout);
  resolve_layout(parallel, world->size());
  auto& solo = solo_runs()[key];
  if (!solo.model) {
    static std::vector<std::unique_ptr<Recipe>> recipes;  // outlive the models that point at them
    recipes.push_back(std::make_unique<Recipe>(parse_recipe(kRecipe, name, model_only)));
    resolve_layout(*recipes.back(), 1);
    solo.run = train_steps(*recipes.back(), *mpi_self(), nullptr);
    solo.model = std::make_unique<Model>(*recipes.back(), Context{}, DType::kF32, 1);
  }
  const TrainRun& one = solo.run;
  const TrainRun many = train_steps(parallel, *world, &solo.model->params());
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

// The layouts each world size tries (dp is what the world leaves).
TEST(LayoutEquivalence, DataParallel) {
  if (mpi_world()->size() == 8) GTEST_SKIP() << "24 sequences do not split into 8 x 2";
  expect_same_run({});
}

TEST(LayoutEquivalence, DataAndExpertParallel) {
  // ep = world size: every rank holds its share of the 12 experts (dp2 ep2, dp3 ep3, dp4 ep4)
  const int n = mpi_world()->size();
  if (n == 8) GTEST_SKIP() << "12 experts do not split 8 ways";
  expect_same_run({"parallel.ep=" + std::to_string(n)});
}

TEST(LayoutEquivalence, ExpertParallelWithCapacityDropping) {
  // capacity 1.0: each expert takes at most T·K/E assignments per micro-batch and rank, so some
  // drop
  const int n = mpi_world()->size();
  if (n == 8) GTEST_SKIP() << "12 experts do not split 8 ways";
  expect_same_run({"parallel.ep=" + std::to_string(n), "model.moe.capacity_factor=1.0"});
}

TEST(LayoutEquivalence, ExpertDataParallelWithinExpertGroups) {
  if (mpi_world()->size() != 4) GTEST_SKIP() << "dp4 ep2 needs 4 ranks";
  expect_same_run({"parallel.ep=2"});  // edp = 2: each expert replicated on two ranks
}

TEST(LayoutEquivalence, DistributedOptimizer) {
  if (mpi_world()->size() == 8) GTEST_SKIP() << "24 sequences do not split into 8 x 2";
  expect_same_run({"parallel.zero1=true"});
}

TEST(LayoutEquivalence, DistributedOptimizerWithExperts) {
  // with 4 ranks: dp4 ep2 (edp 2), so dense state is split 4 ways and expert state 2 ways
  const int n = mpi_world()->size();
  if (n == 8) GTEST_SKIP() << "covered by the 8-rank mixed layouts";
  expect_same_run({"parallel.ep=" + std::to_string(n == 4 ? 2 : n), "parallel.zero1=true"});
}

TEST(LayoutEquivalence, TensorParallel) {
  // tp2; at 4 ranks tp4, which replicates the 2 kv heads (each on 2 ranks)
  const int n = mpi_world()->size();
  if (n != 2 && n != 4) GTEST_SKIP() << "tp must divide the 4 heads";
  expect_same_run({"parallel.tp=" + std::to_string(n)});
}

TEST(LayoutEquivalence, TensorAndExpertParallel) {
  if (mpi_world()->size() != 2) GTEST_SKIP() << "tp2 ep2 runs on 2 ranks";
  expect_same_run({"parallel.tp=2", "parallel.ep=2"});
}

TEST(LayoutEquivalence, ExpertTensorParallel) {
  if (mpi_world()->size() != 2) GTEST_SKIP() << "tp2 etp2 ep1 runs on 2 ranks";
  expect_same_run({"parallel.tp=2", "parallel.etp=2"});
}

TEST(LayoutEquivalence, PipelineParallel) {
  // pp2, pp3 (layers 2/1/1), pp4: one stage per rank
  expect_same_run({"parallel.pp=" + std::to_string(std::min(mpi_world()->size(), 4))});
}

TEST(LayoutEquivalence, TensorPipelineDataExpertParallel) {
  const int n = mpi_world()->size();
  if (n == 4) return expect_same_run({"parallel.tp=2", "parallel.pp=2", "parallel.ep=2"});
  if (n != 8) GTEST_SKIP() << "tp2 pp2 (dp2) layouts need 4 or 8 ranks";
  expect_same_run({"parallel.tp=2", "parallel.pp=2", "parallel.ep=2"});
}

TEST(LayoutEquivalence, TensorPipelineDataExpertParallelWithZero1) {
  if (mpi_world()->size() != 8) GTEST_SKIP() << "tp2 pp2 dp2 ep4 zero1 needs 8 ranks";
  expect_same_run({"parallel.tp=2", "parallel.pp=2", "parallel.ep=4", "parallel.zero1=true"});
}

TEST(LayoutEquivalence, ExpertTensorParallelWithPipeline) {
  if (mpi_world()->size() != 8) GTEST_SKIP() << "tp2 pp2 dp2 etp2 ep2 needs 8 ranks";
  expect_same_run({"parallel.tp=2", "parallel.pp=2", "parallel.etp=2", "parallel.ep=2"});
}

}  // namespace
}  // namespace tmt
