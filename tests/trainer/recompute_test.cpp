// Activation recomputation (train.recompute, trainer/model/model.h and layer_env.h) changes what
// is kept, never what is computed: on the CPU at one rank the small MoE recipe
// (tests/support/small_moe.h) trained under selective and full recomputation gives bit for bit
// the run without — every step's loss and its parts, the gradient norm, the expert loads, the
// validation loss and every parameter after the steps — with grouped-query and latent attention,
// with FP8 GEMMs (train.precision: fp8) and with DeepSeek routing (the expert bias moves every step from the loads, so a rerun that
// counted them twice would show). A model with two in-flight micro-batches (a pipeline stage's
// slots) run forward, forward, backward, backward gives the same gradients bit for bit. And the
// activations shrink: none > selective > full, from the real model's arenas, with the memory plan
// (tramontane check --memory) reporting the same figures.
//
// ranks: 1
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>

#include "kernels/base/rng.h"
#include "parallel/comm.h"
#include "parallel/groups.h"
#include "tests/support/compare.h"
#include "tests/support/small_moe.h"
#include "trainer/data_sources.h"
#include "trainer/memory_plan.h"
#include "trainer/trainer.h"

namespace tmt {
namespace {

Recipe small_moe(const std::vector<std::string>& common, const std::string& mode) {
  std::vector<std::string> overrides = common;
  overrides.push_back("train.recompute=" + mode);
  Recipe r = parse_recipe(test::kSmallMoeRecipe, "small_moe", overrides);
  resolve_layout(r, 1);
  return r;
}

struct Run {
  std::vector<StepMetrics> steps;
  double val = 0;
  std::vector<std::pair<std::string, std::vector<double>>> params;  // values, then the buffers
};

Run train(const Recipe& r) {
  auto self = mpi_self();
  const DataSources data = open_data(r);
  ParallelEnv env = ParallelEnv::create(*self, layout_of(r.parallel));
  Trainer trainer(r, data, env);
  Run run;
  for (int64_t i = 0; i < r.train.steps; ++i) run.steps.push_back(trainer.step());
  run.val = *trainer.validate();
  for (const Param& p : trainer.model().params().all())
    run.params.emplace_back(p.spec.name, test::to_doubles(p.value));
  return run;
}

// Bit for bit: doubles compared as bytes (so -0 != 0 and NaN == NaN of the same bits).
bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

void expect_identical(const Run& got, const Run& want, const std::string& what) {
  ASSERT_EQ(got.steps.size(), want.steps.size());
  for (size_t s = 0; s < want.steps.size(); ++s) {
    const StepMetrics &g = got.steps[s], &w = want.steps[s];
    const std::string at = what + ", step " + std::to_string(s + 1);
    EXPECT_TRUE(same_bits(g.loss, w.loss)) << at << ": loss " << g.loss << " vs " << w.loss;
    EXPECT_TRUE(same_bits(g.lm_loss, w.lm_loss)) << at << ": lm loss";
    EXPECT_TRUE(same_bits(g.aux_loss, w.aux_loss))
        << at << ": aux loss " << g.aux_loss << " vs " << w.aux_loss;
    EXPECT_TRUE(same_bits(g.z_loss, w.z_loss)) << at << ": z loss";
    EXPECT_TRUE(same_bits(g.grad_norm, w.grad_norm)) << at << ": gradient norm";
    EXPECT_EQ(g.max_load, w.max_load) << at << ": the expert loads";
    EXPECT_EQ(g.dropped, w.dropped) << at;
    EXPECT_EQ(g.skipped, w.skipped) << at;
  }
  EXPECT_TRUE(same_bits(got.val, want.val))
      << what << ": validation " << got.val << " vs " << want.val;
  ASSERT_EQ(got.params.size(), want.params.size());
  size_t differing = 0;
  for (size_t i = 0; i < want.params.size(); ++i) {
    ASSERT_EQ(got.params[i].first, want.params[i].first);
    const std::vector<double>&g = got.params[i].second, &w = want.params[i].second;
    for (size_t j = 0; j < w.size(); ++j) {
      if (!same_bits(g[j], w[j])) {
        if (differing++ == 0) {
          ADD_FAILURE() << what << ": " << want.params[i].first << "[" << j << "] " << g[j]
                        << " vs " << w[j] << " (the first difference)";
        }
      }
    }
  }
  EXPECT_EQ(differing, 0u) << what << ": parameter elements that differ";
}

void expect_recompute_changes_nothing(const std::vector<std::string>& common,
                                      const std::string& name) {
  const Run none = train(small_moe(common, "none"));
  EXPECT_LT(none.steps.back().loss, none.steps.front().loss - 0.1) << name << ": it learns";
  for (const char* mode : {"selective", "full"}) {
    expect_identical(train(small_moe(common, mode)), none, name + " " + mode);
  }
  std::printf("  %s: %zu steps, loss %.6f -> %.6f, identical under selective and full\n",
              name.c_str(), none.steps.size(), none.steps.front().loss, none.steps.back().loss);
}

TEST(Recompute, SmallMoeTrainsBitForBitAsWithout) {
  expect_recompute_changes_nothing({"train.steps=6"}, "GQA");
}

TEST(Recompute, Fp8TrainsBitForBitAsWithout) {
  // FP8's fake quantization reruns on the recomputed operands and must round them the same way.
  expect_recompute_changes_nothing({"train.steps=4", "train.precision=fp8"}, "FP8");
}

TEST(Recompute, LatentAttentionTrainsBitForBitAsWithout) {
  const std::vector<std::string> mla = {"train.steps=4",
                                        "model.attention=mla",
                                        "model.mla.kv_lora_rank=10",
                                        "model.mla.qk_nope_head_dim=6",
                                        "model.mla.qk_rope_head_dim=4",
                                        "model.mla.v_head_dim=5"};
  for (const char* q_lora_rank : {"12", "0"}) {
    std::vector<std::string> common = mla;
    common.push_back(std::string("model.mla.q_lora_rank=") + q_lora_rank);
    expect_recompute_changes_nothing(common, std::string("MLA q_lora_rank ") + q_lora_rank);
  }
}

TEST(Recompute, DeepSeekRoutingWithExpertBiasTrainsBitForBitAsWithout) {
  // The expert bias moves every step from the loads the forwards counted, and the sequence-wise
  // loss and capacity dropping ride on the same routing: counted once, chosen the same in the rerun.
  expect_recompute_changes_nothing(
      {"train.steps=6", "model.moe.score=sigmoid", "model.moe.n_groups=4",
       "model.moe.topk_groups=2", "model.moe.routed_scaling_factor=2.0",
       "model.moe.bias_update_rate=0.01", "model.moe.seq_aux_loss_coeff=0.05",
       "model.moe.capacity_factor=1.0"},
      "DeepSeek routing");
}

// A micro-batch of the recipe's shape, a fresh one per `seed`.
MicroBatch micro_batch(Arena& host, const Recipe& r, uint64_t seed) {
  const int64_t b = r.train.micro_batch, s = r.data.seq_len;
  MicroBatch m{host.alloc(DType::kI32, {b, s}), host.alloc(DType::kI32, {b, s})};
  const auto v = static_cast<uint64_t>(r.model.vocab_size);
  for (int64_t i = 0; i < b * s; ++i) {
    const auto k = static_cast<uint64_t>(i);
    m.inputs.ptr<int32_t>()[i] = static_cast<int32_t>(random_bits(seed, 1, k) % v);
    m.targets.ptr<int32_t>()[i] =
        i % 7 == 3 ? -1 : static_cast<int32_t>(random_bits(seed, 2, k) % v);
  }
  return m;
}

TEST(Recompute, TwoInFlightMicroBatchesGiveTheSameGradients) {
  // A pipeline stage's slots: two forwards, then their backwards (1F1B's warm-up). Under full
  // recomputation both slots share one set of block internals, overwritten by the second forward,
  // so the first backward's rerun must restore its own.
  Arena host(Device::kCpu, 1 << 16, "batches");
  const Recipe base = small_moe({}, "none");
  const MicroBatch m0 = micro_batch(host, base, 5), m1 = micro_batch(host, base, 6);
  std::vector<std::vector<double>> want;
  std::vector<double> want_losses;
  for (const char* mode : {"none", "selective", "full"}) {
    const Recipe r = small_moe({}, mode);
    ModelShard shard;
    shard.chunks = {{.layers = {0, r.model.n_layers}, .in_flight = 2}};
    Model model(r.model, model_run_of(r), Context{}, shard);
    model.params().zero_grads();
    const LossParts p0 = model.forward(0, m0, 1.0 / 50, 0.5);
    const LossParts p1 = model.forward(1, m1, 1.0 / 50, 0.5);
    model.backward(0, m0);
    model.backward(1, m1);
    const std::vector<double> losses = {p0.lm_loss_sum, p0.aux_loss, p0.z_loss,
                                        p1.lm_loss_sum, p1.aux_loss, p1.z_loss};
    std::vector<std::vector<double>> grads;
    for (const Param& p : model.params().all()) grads.push_back(test::to_doubles(p.grad));
    if (want.empty()) {
      want = grads;
      want_losses = losses;
      continue;
    }
    for (size_t i = 0; i < losses.size(); ++i)
      EXPECT_TRUE(same_bits(losses[i], want_losses[i])) << mode << ": loss part " << i;
    ASSERT_EQ(grads.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(std::memcmp(grads[i].data(), want[i].data(), want[i].size() * sizeof(double)), 0)
          << mode << ": the gradient of " << model.params().all()[i].spec.name;
    }
  }
}

TEST(Recompute, ActivationsShrinkByModeAndThePlanSaysSo) {
  // At pp2 (stage 0 keeps 2 micro-batches) and with latent attention, the real model's arenas
  // against the plan's dry ones, for each mode; then none > selective > full.
  for (const std::vector<std::string>& common :
       {std::vector<std::string>{"parallel.pp=2"},
        std::vector<std::string>{"model.attention=mla", "model.mla.q_lora_rank=12",
                                 "model.mla.kv_lora_rank=10", "model.mla.qk_nope_head_dim=6",
                                 "model.mla.qk_rope_head_dim=4", "model.mla.v_head_dim=5"}}) {
    std::vector<size_t> acts, expert_rows;
    for (const char* mode : {"none", "selective", "full"}) {
      std::vector<std::string> o = common;
      o.push_back(std::string("train.recompute=") + mode);
      Recipe r = parse_recipe(test::kSmallMoeRecipe, "small", o);
      resolve_layout(r, r.parallel.pp);
      const std::vector<StageMemory> plan = plan_memory(r);
      const Model real(r.model, model_run_of(r), Context{}, model_shard_of(r, 0, nullptr, nullptr));
      EXPECT_EQ(plan[0].activations, real.activations_arena_bytes()) << mode;
      EXPECT_EQ(plan[0].scratch, real.scratch_arena_bytes()) << mode;
      EXPECT_EQ(plan[0].expert_rows, real.expert_rows().planned_bytes()) << mode;
      acts.push_back(real.activations_arena_bytes());
      expert_rows.push_back(real.expert_rows().planned_bytes());
      std::printf("  %s %s: activations %zu, scratch %zu, expert rows %zu bytes (stage 0)\n",
                  common.front().c_str(), mode, real.activations_arena_bytes(),
                  real.scratch_arena_bytes(), real.expert_rows().planned_bytes());
    }
    EXPECT_GT(acts[0], acts[1]) << "selective keeps less than none";
    EXPECT_GT(acts[1], acts[2]) << "full keeps less than selective";
    EXPECT_GT(expert_rows[0], expert_rows[1]) << "the experts' activations are recomputed";
    EXPECT_GT(expert_rows[1], expert_rows[2]) << "one MoE layer's kept rows, for every slot";
  }
}

}  // namespace
}  // namespace tmt
