// `tramontane plan`'s step model (trainer/plan/step_estimate.h): each group's bytes against the
// formulas worked by hand for the small MoE recipe, NVLink or network from where the group's
// ranks sit, the time terms from the hardware's rates, and the memory from memory_plan.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "tests/support/small_moe.h"
#include "trainer/model/model_stats.h"
#include "trainer/plan/search.h"
#include "trainer/plan/step_estimate.h"

namespace tmt {
namespace {

const GroupTraffic* find(const StepEstimate& e, const std::string& group) {
  for (const GroupTraffic& g : e.traffic) {
    if (g.group == group) return &g;
  }
  return nullptr;
}

Recipe small(const std::vector<std::string>& sets, int64_t world) {
  Recipe r = parse_recipe(test::kSmallMoeRecipe, "small", sets);
  resolve_layout(r, world);
  return r;
}

TEST(Plan, RecomputationAddsItsFlopsAndCollectives) {
  // The small recipe at tp2 pp2 ep4 (as below): full recomputation is one more forward of the
  // blocks, (model FLOPs - the head's 6·V·D) / 3 a token, and reruns the forward's TP and EP
  // moves (12 and 6 instead of 8 and 4); selective is the attention core's forward again plus
  // the elementwise ops, and re-gathers the norms' outputs (10 TP moves). Model FLOPs, and so MFU's
  // numerator, stay the model's.
  const Hardware& hw = hardware("h100");
  const auto plan = [&](const char* mode) {
    return estimate_step(small({"parallel.tp=2", "parallel.pp=2", "parallel.ep=4",
                                std::string("train.recompute=") + mode},
                               16),
                         hw, {});
  };
  const StepEstimate none = plan("none"), selective = plan("selective"), full = plan("full");
  EXPECT_EQ(none.recompute_flops_per_token, 0);
  EXPECT_DOUBLE_EQ(full.recompute_flops_per_token, (none.flops_per_token - 6.0 * 64 * 32) / 3);
  EXPECT_GT(selective.recompute_flops_per_token, 0);
  EXPECT_LT(selective.recompute_flops_per_token, full.recompute_flops_per_token);
  EXPECT_DOUBLE_EQ(full.flops_per_token, none.flops_per_token);
  EXPECT_LT(none.compute_s, selective.compute_s);
  EXPECT_LT(selective.compute_s, full.compute_s);
  EXPECT_DOUBLE_EQ(find(full, "tp")->bytes, find(none, "tp")->bytes * 12 / 8);
  EXPECT_DOUBLE_EQ(find(selective, "tp")->bytes, find(none, "tp")->bytes * 10 / 8);
  EXPECT_DOUBLE_EQ(find(full, "ep")->bytes, find(none, "ep")->bytes * 6 / 4);
  EXPECT_GT(none.mfu, full.mfu);
  // And the memory it plans is the smaller one (memory_plan.h sizes each mode).
  EXPECT_GT(none.peak_bytes, selective.peak_bytes);
  EXPECT_GT(selective.peak_bytes, full.peak_bytes);
}

TEST(Plan, TrafficOfEachGroupByHand) {
  // 16 GPUs: tp2 pp2 dp4, experts ep4 edp2; 24 sequences of 16 tokens in micro-batches of 2:
  // m = 24 / (2 · 4) = 3 micro-batches, T = 32 tokens, D = 32, 2 layers a stage (stage 0: the
  // dense layer and one MoE layer; stage 1: two MoE layers).
  const Recipe r = small({"parallel.tp=2", "parallel.pp=2", "parallel.ep=4"}, 16);
  const Hardware& hw = hardware("h100");
  const StepEstimate e = estimate_step(r, hw, {});
  EXPECT_EQ(e.micro_batches, 3);
  const double m = 3, t = 32, d = 32, b = 2;
  ASSERT_NE(find(e, "tp"), nullptr);
  EXPECT_DOUBLE_EQ(find(e, "tp")->bytes, m * 2 * 8 * 0.5 * t * d * b);
  ASSERT_NE(find(e, "ep"), nullptr);
  EXPECT_DOUBLE_EQ(find(e, "ep")->bytes, m * 2 * 4 * 0.75 * (t / 2) * 2 * d * b);  // K = 2
  ASSERT_NE(find(e, "pp"), nullptr);
  EXPECT_DOUBLE_EQ(find(e, "pp")->bytes, m * 2 * (t / 2) * d * b);
  // Where the groups sit: tp (ranks 0, 1), dp (0, 2, 4, 6), ep within a stage's 8 ranks: inside
  // the 8-GPU domain; pp (0, 8) crosses it.
  EXPECT_TRUE(find(e, "tp")->nvlink);
  EXPECT_TRUE(find(e, "dp")->nvlink);
  EXPECT_TRUE(find(e, "ep")->nvlink);
  EXPECT_FALSE(find(e, "pp")->nvlink);
  EXPECT_DOUBLE_EQ(find(e, "pp")->seconds, find(e, "pp")->bytes / (50e9 * 0.8));
  EXPECT_DOUBLE_EQ(find(e, "tp")->seconds, find(e, "tp")->bytes / (450e9 * 0.8));
  // A 4-GPU NVLink domain puts dp (ranks 0..6) on the network.
  const StepEstimate small_domain = estimate_step(r, hw, {.nvlink_domain = 4});
  EXPECT_FALSE(find(small_domain, "dp")->nvlink);
  EXPECT_TRUE(find(small_domain, "tp")->nvlink);
}

TEST(Plan, ContextParallelTrafficByHand) {
  // 16 GPUs: tp2 cp2 pp2 dp2, experts ep4 (folded over tp · cp · dp = 8): m = 24 / (2 · 2) = 6
  // micro-batches, each rank holding T = 2 · 16 / 2 = 16 of their tokens. Every attention layer
  // (2 a stage) gathers the whole sequences' keys and values, k and v of max(1, Hk / tp) = 1 head
  // of Dh = 8: W = 16 values a token, 3 collectives a layer (4 with recomputation); the TP, EP
  // and PP terms move the rank's T tokens; the dense gradients are summed over cp · dp = 4 ranks.
  const std::vector<std::string> layout = {"parallel.tp=2", "parallel.cp=2", "parallel.pp=2",
                                           "parallel.ep=4"};
  const Recipe r = small(layout, 16);
  const Hardware& hw = hardware("h100");
  const StepEstimate e = estimate_step(r, hw, {});
  EXPECT_EQ(e.micro_batches, 6);
  const double m = 6, t = 16, d = 32, b = 2, w = 16;
  ASSERT_NE(find(e, "cp"), nullptr);
  EXPECT_EQ(find(e, "cp")->size, 2);
  EXPECT_DOUBLE_EQ(find(e, "cp")->bytes, m * 2 * 3 * 0.5 * (2 * 16) * w * b);
  EXPECT_DOUBLE_EQ(find(e, "tp")->bytes, m * 2 * 8 * 0.5 * t * d * b);
  EXPECT_DOUBLE_EQ(find(e, "ep")->bytes, m * 2 * 4 * 0.75 * (t / 2) * 2 * d * b);
  EXPECT_DOUBLE_EQ(find(e, "pp")->bytes, m * 2 * (t / 2) * d * b);
  ASSERT_NE(find(e, "dp"), nullptr);
  EXPECT_EQ(find(e, "dp")->size, 4);
  // cp (ranks 0, 2) and the dense replicas (0, 2, 4, 6) sit in the 8-GPU domain.
  EXPECT_TRUE(find(e, "cp")->nvlink);
  EXPECT_TRUE(find(e, "dp")->nvlink);
  // The same FLOPs a GPU as tp2 pp2 dp4: context parallelism splits the work, not adds to it.
  const StepEstimate no_cp =
      estimate_step(small({"parallel.tp=2", "parallel.pp=2", "parallel.ep=4"}, 16), hw, {});
  EXPECT_DOUBLE_EQ(e.busiest_flops, no_cp.busiest_flops);
  auto selective = layout;
  selective.push_back("train.recompute=selective");
  EXPECT_DOUBLE_EQ(find(estimate_step(small(selective, 16), hw, {}), "cp")->bytes,
                   find(e, "cp")->bytes * 4 / 3);
  // ZeRO-1 shards the optimizer over the cp · dp replicas.
  auto zero1 = layout,
       zero1_no_cp = std::vector<std::string>{"parallel.tp=2", "parallel.pp=2", "parallel.ep=4",
                                              "parallel.zero1=true"};
  zero1.push_back("parallel.zero1=true");
  EXPECT_DOUBLE_EQ(estimate_step(small(zero1, 16), hw, {}).optimizer_s,
                   estimate_step(small(zero1_no_cp, 16), hw, {}).optimizer_s);
}

TEST(Plan, SearchTriesContextParallelOnLongSequencesOnly) {
  // At 8192 tokens cp 2 leaves each rank 4096 of a sequence (kMinCpTokens), cp 4 would leave
  // 2048: the search tries parallel.cp 1 and 2; at the recipe's own 16 tokens, 1 alone. Every
  // layout it ranks holds tp · cp · dp · pp = 8.
  const auto search = [](int64_t seq) {
    const std::string seq_set = fmt::format("data.seq_len={}", seq);
    const RecipeMaker make = [seq_set](std::vector<std::string> sets) {
      sets.push_back(seq_set);
      Recipe r = parse_recipe(test::kSmallMoeRecipe, "small", sets);
      resolve_layout(r, 8);
      return r;
    };
    const Recipe base = parse_recipe(test::kSmallMoeRecipe, "small", {seq_set});
    return search_layouts(base, make, 8, hardware("h100"), {}, 100000);
  };
  const auto cps = [](const LayoutSearch& s) {
    std::set<int64_t> out;
    for (const LayoutCandidate& c : s.ranked) {
      const ParallelConfig& p = c.recipe.parallel;
      EXPECT_EQ(p.tp * p.cp * p.dp * p.pp, 8);
      out.insert(p.cp);
    }
    return out;
  };
  const LayoutSearch long_seq = search(8192), short_seq = search(16);
  EXPECT_EQ(cps(long_seq), (std::set<int64_t>{1, 2}));
  EXPECT_EQ(cps(short_seq), (std::set<int64_t>{1}));
  EXPECT_GT(long_seq.considered, short_seq.considered);
}

TEST(Plan, TimeTermsAndRates) {
  const Recipe r = small({"parallel.tp=2", "parallel.pp=2", "parallel.ep=4"}, 16);
  const Hardware& hw = hardware("h200");
  const PlanAssumptions a;
  const StepEstimate e = estimate_step(r, hw, a);
  const ModelStats s = model_stats(r.model, r.data.seq_len);
  EXPECT_DOUBLE_EQ(e.flops_per_token, s.flops_per_token());
  EXPECT_DOUBLE_EQ(e.tokens_per_step, 24.0 * 16);
  // Balanced stages (2 layers each): the busiest rank does 1/16 of the step's FLOPs.
  EXPECT_DOUBLE_EQ(e.busiest_flops, s.flops_per_token() * 24 * 16 / 16);
  EXPECT_DOUBLE_EQ(e.compute_s, e.busiest_flops / (989e12 * a.matmul_efficiency));
  EXPECT_DOUBLE_EQ(e.bubble_s, e.compute_s * 1.0 / 3.0);
  double comm = 0;
  for (const GroupTraffic& g : e.traffic) comm += g.seconds;
  EXPECT_DOUBLE_EQ(e.step_s, e.compute_s + e.bubble_s + e.optimizer_s + comm);
  EXPECT_DOUBLE_EQ(e.tokens_per_s, 24.0 * 16 / e.step_s);
  EXPECT_DOUBLE_EQ(e.mfu, e.tflops_per_gpu / 989);
  EXPECT_LT(e.mfu, a.matmul_efficiency);
  // One rank: no traffic, no bubble; MFU is the efficiency less the optimizer's share.
  const StepEstimate one = estimate_step(small({}, 1), hw, a);
  EXPECT_TRUE(one.traffic.empty());
  EXPECT_EQ(one.bubble_s, 0);
  EXPECT_NEAR(one.mfu, a.matmul_efficiency * one.compute_s / one.step_s, 1e-12);
}

TEST(Plan, MemoryIsTheTrainersSizingAndFitsAgainstTheDevice) {
  Recipe r = small({"parallel.pp=2"}, 2);
  const StepEstimate e = estimate_step(r, hardware("h100"), {});
  r.train.device = Device::kCuda;
  r.train.dtype = DType::kBF16;
  const std::vector<StageMemory> plan = plan_memory(r);
  ASSERT_EQ(e.memory.size(), plan.size());
  for (size_t i = 0; i < plan.size(); ++i) {
    EXPECT_EQ(e.memory[i].total(), plan[i].total());
    EXPECT_GT(e.memory[i].compute_weights, 0u);  // planned in bf16
  }
  EXPECT_TRUE(e.fits);
  // Mixtral 8x7B's recipe (tp1 pp4 ep8 zero1) fits 80 GB at 64 GPUs.
  Recipe mixtral = load_recipe(std::string(TMT_SOURCE_DIR) + "/recipes/mixtral-8x7b.yaml", {});
  resolve_layout(mixtral, 64);
  const StepEstimate big = estimate_step(mixtral, hardware("h100"), {});
  EXPECT_TRUE(big.fits);
  EXPECT_GT(static_cast<double>(big.peak_bytes), 40e9);
  EXPECT_GT(big.mfu, 0.3);
  EXPECT_LT(big.mfu, 0.55);
}

TEST(Plan, Fp8GemmsAndOverlapChangeOnlyTheirTerms) {
  // FP8: the matmul share of the FLOPs at the FP8 peak, the attention core's at bf16's; overlap:
  // the longer of compute and communication. Bytes (without fp8.dispatch), bubble ratio and memory
  // stay as they were.
  const Recipe r =
      small({"parallel.tp=2", "parallel.pp=2", "parallel.ep=4", "fp8.dispatch=false"}, 16);
  const Hardware& hw = hardware("h100");
  const StepEstimate base = estimate_step(r, hw, {});
  const StepEstimate fp8 = estimate_step(r, hw, {.fp8_gemms = true});
  const StepEstimate both = estimate_step(r, hw, {.fp8_gemms = true, .overlap = true});
  const ModelStats stats = model_stats(r.model, r.data.seq_len);
  const double share = stats.matmul_flops_per_token / stats.flops_per_token();
  EXPECT_NEAR(fp8.compute_s,
              base.compute_s * (share * hw.bf16_tflops / hw.fp8_tflops + (1 - share)), 1e-15);
  EXPECT_NEAR(fp8.bubble_s / fp8.compute_s, base.bubble_s / base.compute_s, 1e-12);
  EXPECT_DOUBLE_EQ(fp8.communication_s, base.communication_s);
  EXPECT_DOUBLE_EQ(fp8.step_s,
                   fp8.compute_s + fp8.communication_s + fp8.bubble_s + fp8.optimizer_s);
  EXPECT_DOUBLE_EQ(both.step_s, std::max(both.compute_s, both.communication_s) + both.bubble_s +
                                    both.optimizer_s);
  EXPECT_LT(both.step_s, fp8.step_s);
  EXPECT_DOUBLE_EQ(fp8.mfu, fp8.tflops_per_gpu / hw.fp8_tflops);
  EXPECT_EQ(both.peak_bytes, base.peak_bytes);

  // With fp8.dispatch (the default) the forward's dispatch of the 4 expert all-to-alls carries
  // D + 4 bytes a row (D = 32: e4m3 codes and one fp32 scale) instead of bf16's 2·D: the EP bytes
  // become (3·64 + 36) / (4·64) of bf16's, every other group's stay.
  const Recipe rd = small({"parallel.tp=2", "parallel.pp=2", "parallel.ep=4"}, 16);
  const StepEstimate dispatch = estimate_step(rd, hw, {.fp8_gemms = true});
  ASSERT_EQ(dispatch.traffic.size(), fp8.traffic.size());
  bool ep_seen = false;
  for (size_t i = 0; i < fp8.traffic.size(); ++i) {
    const GroupTraffic &g = dispatch.traffic[i], &was = fp8.traffic[i];
    ASSERT_EQ(g.group, was.group);
    if (g.group == "ep") {
      ep_seen = true;
      EXPECT_DOUBLE_EQ(g.bytes, was.bytes * (3 * 64 + 36) / (4 * 64));
    } else {
      EXPECT_DOUBLE_EQ(g.bytes, was.bytes) << g.group;
    }
  }
  EXPECT_TRUE(ep_seen);
  // Full recomputation dispatches twice in FP8: (4·64 + 2·36) / (6·64).
  const StepEstimate full_bf16 =
      estimate_step(small({"parallel.tp=2", "parallel.pp=2", "parallel.ep=4", "fp8.dispatch=false",
                           "train.recompute=full"},
                          16),
                    hw, {.fp8_gemms = true});
  const StepEstimate full_fp8 = estimate_step(
      small({"parallel.tp=2", "parallel.pp=2", "parallel.ep=4", "train.recompute=full"}, 16), hw,
      {.fp8_gemms = true});
  for (size_t i = 0; i < full_fp8.traffic.size(); ++i) {
    if (full_fp8.traffic[i].group != "ep") continue;
    EXPECT_DOUBLE_EQ(full_fp8.traffic[i].bytes,
                     full_bf16.traffic[i].bytes * (4 * 64 + 2 * 36) / (6 * 64));
  }
}

TEST(Plan, SearchRanksEveryValidLayoutThatFitsFastestFirst) {
  // The small recipe on 16 H100s: each ranked layout is one the rules accept, fits, and is
  // estimated exactly as plan estimates it alone; the ranking is by tokens/s. The rules refuse
  // some (ep must divide the 12 experts and tp x dp, the micro-batches the batch over dp); on a
  // device too small for anything, nothing is ranked and every valid layout was sized.
  const RecipeMaker make = [](const std::vector<std::string>& sets) {
    Recipe r = parse_recipe(test::kSmallMoeRecipe, "small", sets);
    resolve_layout(r, 16);
    return r;
  };
  const Recipe base = parse_recipe(test::kSmallMoeRecipe, "small", {});
  const Hardware& hw = hardware("h100");
  const LayoutSearch s = search_layouts(base, make, 16, hw, {}, 1000);
  EXPECT_GT(s.considered, 100);
  EXPECT_GT(s.refused, 0);
  EXPECT_EQ(s.too_large, 0);
  ASSERT_EQ(static_cast<int64_t>(s.ranked.size()), s.considered - s.refused);
  for (size_t i = 0; i < s.ranked.size(); ++i) {
    const LayoutCandidate& c = s.ranked[i];
    EXPECT_TRUE(c.sized && c.estimate.fits);
    EXPECT_EQ(c.recipe.parallel.tp * c.recipe.parallel.dp * c.recipe.parallel.pp, 16);
    if (i > 0) {
      EXPECT_GE(s.ranked[i - 1].estimate.tokens_per_s, c.estimate.tokens_per_s);
    }
    const StepEstimate alone = estimate_step(make(c.sets), hw, {});
    EXPECT_DOUBLE_EQ(alone.tokens_per_s, c.estimate.tokens_per_s);
    EXPECT_EQ(alone.peak_bytes, c.estimate.peak_bytes);
  }
  // The layout worked by hand above (tp2 pp2 ep4, micro-batches of 2) is among them, the
  // recipe's own (dp 16 at micro-batches of 2: 24 sequences do not divide) is not.
  const auto has = [&](int64_t tp, int64_t pp, int64_t ep, int64_t micro) {
    return std::any_of(s.ranked.begin(), s.ranked.end(), [&](const LayoutCandidate& c) {
      const ParallelConfig& p = c.recipe.parallel;
      return p.tp == tp && p.pp == pp && p.ep == ep && p.etp == 1 && !p.zero1 &&
             c.recipe.train.micro_batch == micro && c.recipe.train.recompute == Recompute::kNone;
    });
  };
  EXPECT_TRUE(has(2, 2, 4, 2));
  EXPECT_FALSE(has(1, 1, 1, 2));
  // Each layout comes in the three recompute modes, every mode slower than the one before (the
  // set that differs is the last, train.recompute). Not always smaller: full recompute adds one
  // set of block internals a stage, which at these sizes can outweigh what it saves (up to 4 KiB
  // here); recompute_test holds the arenas' order.
  std::map<std::vector<std::string>, const LayoutCandidate*> by_sets;
  for (const LayoutCandidate& c : s.ranked) by_sets[c.sets] = &c;
  int64_t compared = 0;
  for (const LayoutCandidate& c : s.ranked) {
    if (c.recipe.train.recompute == Recompute::kNone) continue;
    std::vector<std::string> before = c.sets;
    before.back() = c.recipe.train.recompute == Recompute::kFull ? "train.recompute=selective"
                                                                 : "train.recompute=none";
    ASSERT_TRUE(by_sets.count(before)) << fmt::format("{}", fmt::join(c.sets, " "));
    EXPECT_LT(c.estimate.tokens_per_s, by_sets[before]->estimate.tokens_per_s);
    ++compared;
  }
  EXPECT_EQ(compared, 2 * (s.considered - s.refused) / 3);
  const LayoutSearch top3 = search_layouts(base, make, 16, hw, {}, 3);
  ASSERT_EQ(top3.ranked.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(top3.ranked[i].sets, s.ranked[i].sets);
  Hardware small_device = hw;
  small_device.memory_gib = 1.0;  // under the 2 GiB reserve
  const LayoutSearch none = search_layouts(base, make, 16, small_device, {}, 5);
  EXPECT_TRUE(none.ranked.empty());
  EXPECT_EQ(none.too_large, s.considered - s.refused);
}

TEST(Plan, UnknownHardwareIsAnInputError) {
  EXPECT_THROW(hardware("h900"), InputError);
  EXPECT_EQ(hardware("gb200").nvlink_domain, 72);
}

}  // namespace
}  // namespace tmt
