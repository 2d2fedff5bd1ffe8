#include "tests/support/layout_run.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "kernels/copy.h"
#include "tests/support/compare.h"
#include "trainer/trainer.h"

namespace tmt::test {
namespace {

// A parameter's values as doubles, copied from the device when they live there.
std::vector<double> host_values(const Tensor& t) {
  if (t.device == Device::kCpu) return to_doubles(t);
  std::vector<std::byte> bytes(t.nbytes());
  copy_to_host(Context{t.device, nullptr}, bytes.data(), t);
  Tensor host = t;
  host.data = bytes.data();
  host.device = Device::kCpu;
  return to_doubles(host);
}

}  // namespace

// Each rank adds its block (wherever it lies in the global tensor) and a count of 1 per element it
// holds; replicas (data-parallel, tensor-parallel) hold equal values, so the sum divided by the
// count is the tensor. `whole` comes from the one-rank model, so every rank walks the same list
// whatever its pipeline stage holds.
std::map<std::string, std::vector<double>> gather_params(const ParamStore& local,
                                                         const ParamStore& whole,
                                                         Communicator& world) {
  std::map<std::string, std::vector<double>> out;
  for (const Param& w : whole.all()) {
    const auto n = static_cast<size_t>(w.spec.global_shape.numel());
    std::vector<double> sum(2 * n, 0.0);  // values, then counts
    if (const Param* p = local.find(w.spec.name)) {
      const std::vector<double> mine = host_values(p->value);
      for (size_t i = 0; i < mine.size(); ++i) {
        const auto g = static_cast<size_t>(global_index(p->spec, static_cast<int64_t>(i)));
        sum[g] += mine[i];
        sum[n + g] += 1.0;
      }
    }
    world.all_reduce(
        Tensor{sum.data(), DType::kF64, Device::kCpu, Shape{static_cast<int64_t>(2 * n)}});
    std::vector<double> values(n);
    for (size_t i = 0; i < n; ++i) {
      EXPECT_GT(sum[n + i], 0.0) << w.spec.name << " element " << i << " is on no rank";
      values[i] = sum[i] / std::max(sum[n + i], 1.0);
    }
    out[w.spec.name] = std::move(values);
  }
  return out;
}

TrainRun train_steps(const Recipe& recipe, Communicator& world, const ParamStore* whole,
                     const EditParams& edit) {
  const DataSources data = open_data(recipe);
  ParallelEnv env = ParallelEnv::create(world, layout_of(recipe.parallel));
  Trainer trainer(recipe, data, env);
  if (edit) {
    edit(trainer.model().params());
    trainer.model().params().sync_weights();
  }
  TrainRun run;
  for (int i = 0; i < recipe.train.steps; ++i) {
    const StepMetrics m = trainer.step();
    run.losses.push_back(m.loss);
    for (double load : m.max_load) run.max_load = std::max(run.max_load, load);
  }
  run.val = *trainer.validate();
  const ExpertRows& rows = trainer.model().expert_rows();
  double grew = rows.capacity_bytes() > rows.planned_bytes() ? 1.0 : 0.0;
  world.all_reduce(Tensor{&grew, DType::kF64, Device::kCpu, Shape{1}});
  run.expert_rows_grew = grew > 0;
  const ParamStore& mine = trainer.model().params();
  run.params = gather_params(mine, whole != nullptr ? *whole : mine, world);
  return run;
}

namespace {

// One-rank runs, by the settings that are not the layout's (computed once per test program).
struct SoloRun {
  TrainRun run;
  std::unique_ptr<Model> model;  // its parameter list (names, global shapes), on the CPU
};
std::map<std::string, SoloRun>& solo_runs() {
  static std::map<std::string, SoloRun> runs;
  return runs;
}

}  // namespace

TrainRun expect_same_run(const Equivalence& e, const std::vector<std::string>& layout) {
  auto world = mpi_world();
  std::string name = "layout";
  for (const auto& s : layout) name += " " + s;
  // The one-rank run shares every setting but the layout.
  std::vector<std::string> model_only = e.common, all = e.common;
  std::string key = std::string(e.edit_name) + ";";
  for (const auto& s : e.common) key += s + ";";
  for (const auto& s : layout) {
    all.push_back(s);
    if (s.rfind("parallel.", 0) != 0) {
      model_only.push_back(s);
      key += s + ";";
    }
  }
  Recipe parallel = parse_recipe(e.recipe, name, all);
  resolve_layout(parallel, world->size());
  auto& solo = solo_runs()[std::string(e.recipe) + key];
  if (!solo.model) {
    Recipe one_rank = parse_recipe(e.recipe, name, model_only);
    resolve_layout(one_rank, 1);
    solo.run = train_steps(one_rank, *mpi_self(), nullptr, e.edit);
    solo.model = std::make_unique<Model>(
        one_rank.model,
        ModelRun{.micro_batch = 1, .seq_len = one_rank.data.seq_len, .seed = one_rank.train.seed},
        Context{});
  }
  const TrainRun& one = solo.run;
  const TrainRun many = train_steps(parallel, *world, &solo.model->params(), e.edit);
  for (size_t s = 0; s < one.losses.size(); ++s) {
    EXPECT_LT(std::fabs(many.losses[s] - one.losses[s]) / one.losses[s], e.rtol)
        << name << ", step " << s + 1 << ": " << many.losses[s] << " vs " << one.losses[s];
  }
  EXPECT_LT(one.losses.back(), one.losses.front() - 0.1)
      << "the run did not learn: the comparison means little";
  EXPECT_LT(std::fabs(many.val - one.val) / one.val, e.rtol) << name;
  if (many.params.size() != one.params.size()) {
    ADD_FAILURE() << name << ": " << many.params.size() << " parameters vs " << one.params.size();
    return many;
  }
  double worst = 0;
  for (const auto& [pname, values] : one.params) {
    EXPECT_TRUE(all_close(many.params.at(pname), values, e.param_rtol)) << name << ": " << pname;
    double d = 0, n = 0;
    for (size_t i = 0; i < values.size(); ++i) {
      d += (many.params.at(pname)[i] - values[i]) * (many.params.at(pname)[i] - values[i]);
      n += values[i] * values[i];
    }
    worst = std::max(worst, std::sqrt(d / n));
  }
  if (world->rank() == 0) {
    std::string common;
    for (const auto& s : e.common) common += " " + s;
    std::printf(
        "  %s%s on %d ranks: loss %.5f -> %.5f, last-step loss rel diff %.1e, worst parameter rel "
        "diff %.1e\n",
        name.c_str(), common.c_str(), world->size(), one.losses.front(), one.losses.back(),
        std::fabs(many.losses.back() - one.losses.back()) / one.losses.back(), worst);
  }
  return many;
}

}  // namespace tmt::test
