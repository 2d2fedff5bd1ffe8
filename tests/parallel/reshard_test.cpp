// Checkpoints load at any layout: a run saves at one layout after 3 optimizer steps and continues;
// a second run loads that checkpoint at another layout (tp, pp, ep, dp and zero1 all may change)
// and continues; the losses of steps 4..6 must agree to fp32 reordering (< 1e-5 relative).
//
// ranks: 8
// timeout: 600
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "tests/support/small_moe.h"
#include "trainer/trainer.h"

namespace tmt {
namespace {

const char* const kRecipe = test::kSmallMoeRecipe;

struct Layout {
  int tp, pp, ep, dp;
  bool zero1 = false;
  int vpp = 1;
  int cp = 1;
  int world() const { return tp * cp * pp * dp; }
  std::vector<std::string> sets(const std::string& dir) const {
    return {"parallel.tp=" + std::to_string(tp),
            "parallel.pp=" + std::to_string(pp),
            "parallel.vpp=" + std::to_string(vpp),
            "parallel.cp=" + std::to_string(cp),
            "parallel.ep=" + std::to_string(ep),
            "parallel.zero1=" + std::string(zero1 ? "true" : "false"),
            "run.dir=" + dir,
            "train.steps=6"};
  }
  std::string str() const {
    return "tp" + std::to_string(tp) + (cp > 1 ? " cp" + std::to_string(cp) : "") + " pp" +
           std::to_string(pp) +
           (vpp > 1 ? " vpp" + std::to_string(vpp) : "") + " ep" + std::to_string(ep) + " dp" +
           std::to_string(dp) + (zero1 ? " zero1" : "");
  }
};

// Runs steps 1..6 at `layout` on the first layout.world() ranks of the world (the others wait),
// saving after step 3 when `save`, or first loading `load` (a checkpoint after step 3). Returns
// the losses of steps 4..6 on every rank.
std::vector<double> run(const Layout& layout, const std::string& dir, bool save,
                        const std::string& load, const std::vector<std::string>& model) {
  auto world = mpi_world();
  const bool member = world->rank() < layout.world();
  auto group = world->split(member ? 0 : 1, world->rank());
  std::vector<double> losses(3, 0.0);
  if (member) {
    std::vector<std::string> sets = layout.sets(dir);
    sets.insert(sets.end(), model.begin(), model.end());
    Recipe r = parse_recipe(kRecipe, layout.str(), sets);
    resolve_layout(r, layout.world());
    const DataSources data = open_data(r);
    ParallelEnv env = ParallelEnv::create(*group, layout_of(r.parallel));
    Trainer trainer(r, data, env);
    if (!load.empty()) {
      check_checkpoint(load, r, trainer.model().params(), group->rank(), group->size());
      const TrainingState s = load_checkpoint(load, trainer.model().params(), trainer.optimizer());
      EXPECT_EQ(s.step, 3);
      trainer.resume_at(s.step);
    }
    while (trainer.steps_done() < 6) {
      const StepMetrics m = trainer.step();
      if (m.step > 3) losses[static_cast<size_t>(m.step - 4)] = m.loss;
      if (save && m.step == 3) {
        save_checkpoint(r, env, trainer.model().params(), trainer.optimizer(),
                        {3, trainer.optimizer().steps_taken(), 0});
      }
    }
  }
  Tensor t{losses.data(), DType::kF64, Device::kCpu, Shape{3}};
  world->broadcast(t, 0);
  world->barrier();
  return losses;
}

void expect_reshard(const Layout& from, const Layout& to,
                    const std::vector<std::string>& model = {}) {
  auto world = mpi_world();
  // One directory for all ranks: rank 0's pid names it.
  int64_t id = getpid();
  world->broadcast(Tensor{&id, DType::kI64, Device::kCpu, Shape{1}}, 0);
  const std::string dir = "/tmp/tmt-reshard-" + std::to_string(id);
  const std::vector<double> original = run(from, dir, true, "", model);
  const std::vector<double> resumed =
      run(to, dir + "-2", false, dir + "/checkpoints/step-0000003", model);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_LT(std::fabs(resumed[i] - original[i]) / original[i], 1e-5)
        << from.str() << " -> " << to.str() << ", step " << i + 4 << ": " << resumed[i] << " vs "
        << original[i];
  }
  if (world->rank() == 0) {
    std::printf("  %s -> %s: step 4..6 losses %.6f %.6f %.6f, worst rel diff %.1e\n",
                from.str().c_str(), to.str().c_str(), resumed[0], resumed[1], resumed[2],
                std::max({std::fabs(resumed[0] - original[0]) / original[0],
                          std::fabs(resumed[1] - original[1]) / original[1],
                          std::fabs(resumed[2] - original[2]) / original[2]}));
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    std::filesystem::remove_all(dir + "-2", ec);
  }
  world->barrier();
}

TEST(Reshard, DataParallelToTensorAndPipeline) { expect_reshard({1, 1, 1, 4}, {2, 2, 1, 1}); }

TEST(Reshard, TensorExpertDataToPipelineExpertData) { expect_reshard({2, 1, 2, 2}, {1, 2, 4, 4}); }

TEST(Reshard, ExpertParallelZero1ToTensorExpert) {
  expect_reshard({1, 1, 4, 4, true}, {2, 1, 2, 2});
}

// Interleaved chunks (layers 0 and 2 on stage 0, 1 and 3 on stage 1) save and load by name like
// any stage's layers.
TEST(Reshard, InterleavedPipelineToTensorPipeline) {
  expect_reshard({1, 2, 2, 2, true, 2}, {2, 2, 1, 2});
}

// Context-parallel ranks hold the same dense parameters (one of them writes each block) and their
// expert grid folds over cp as well.
TEST(Reshard, ContextParallelToTensorParallel) {
  expect_reshard({1, 1, 2, 2, true, 1, 2}, {2, 1, 1, 2});
}

TEST(Reshard, EverythingToOneRank) { expect_reshard({2, 2, 2, 2}, {1, 1, 1, 1}); }

// The aux-loss-free expert bias moves every step and steers the choice of experts: it is saved and
// restored (a lost bias would route the resumed steps differently).
TEST(Reshard, DeepSeekRoutingWithItsExpertBias) {
  const std::vector<std::string> deepseek = {
      "model.moe.score=sigmoid",         "model.moe.n_groups=4",
      "model.moe.topk_groups=2",         "model.moe.routed_scaling_factor=2.0",
      "model.moe.bias_update_rate=0.02", "model.moe.seq_aux_loss_coeff=0.01"};
  expect_reshard({1, 1, 1, 1}, {1, 1, 1, 1}, deepseek);
  expect_reshard({2, 1, 2, 2}, {1, 2, 4, 4, true}, deepseek);
}

}  // namespace
}  // namespace tmt
