// Numerics a run reports, through the binary. The loss-spike guard (train.spike_zscore): every
// step's logged z-score is recomputed here from the logged losses of the applied steps, the steps
// above the threshold are flagged, warned about, and skipped (AdamW's step count in the checkpoint
// leaves them out), or only logged under spike_action: log. Per-layer metrics (log.per_layer):
// each block's gradient norm at tp2, pp2, ep2, dp2 with ZeRO-1 and cp2 equals one rank's, their
// squares add up to the global norm's, and each MoE layer's tokens per expert add up to
// tokens · top_k.
//
// timeout: 600
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "tests/support/run.h"
#include "tests/support/temp_dir.h"
#include "trainer/optim/loss_spike.h"

namespace tmt {
namespace {
using nlohmann::json;

std::vector<json> metrics_of(const test::TempDir& dir) {
  std::vector<json> lines;
  std::ifstream in(dir.file("metrics.jsonl"));
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  return lines;
}

// The tiny model at a layout of `ranks` ranks.
test::RunResult train(const test::TempDir& dir, int ranks, const std::vector<std::string>& sets) {
  std::vector<std::string> args = {"train", "--set", "run.dir=" + dir.path().string(), "--set",
                                   "log.eval_every=0"};
  for (const std::string& s : sets) {
    args.push_back("--set");
    args.push_back(s);
  }
  return test::run_tramontane(args, ranks, 300);
}

// Replays the detector over the logged losses: the z-scores, the flags and the skips must be what
// the header (trainer/optim/loss_spike.h) says. Returns the number of spikes.
int check_spikes(const std::vector<json>& lines, double threshold, bool skip) {
  std::vector<double> applied;
  int spikes = 0;
  for (const json& j : lines) {
    const double loss = j["loss"].get<double>();
    const int64_t step = j["step"].get<int64_t>();
    if (static_cast<int64_t>(applied.size()) < LossSpikes::kWindow) {
      EXPECT_FALSE(j.contains("loss_zscore")) << "step " << step << " during the warm-up";
      EXPECT_FALSE(j["skipped"].get<bool>()) << "step " << step;
      applied.push_back(loss);
      continue;
    }
    const std::vector<double> window(applied.end() - LossSpikes::kWindow, applied.end());
    double mean = 0, var = 0;
    for (double x : window) mean += x;
    mean /= static_cast<double>(window.size());
    for (double x : window) var += (x - mean) * (x - mean);
    const double z = (loss - mean) / std::sqrt(var / static_cast<double>(window.size() - 1));
    EXPECT_NEAR(j.value("loss_zscore", NAN), z, 1e-6 * std::max(1.0, std::abs(z)))
        << "step " << step;
    const bool spike = z > threshold;
    EXPECT_EQ(j.value("loss_spike", false), spike) << "step " << step << " z " << z;
    EXPECT_EQ(j["skipped"].get<bool>(), spike && skip) << "step " << step;
    spikes += spike ? 1 : 0;
    if (!(spike && skip)) applied.push_back(loss);
  }
  return spikes;
}

int64_t adam_steps_of(const std::string& checkpoint) {
  const auto r = test::run_command({test::tramontane_binary(), "inspect", checkpoint});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::smatch m;
  if (!std::regex_search(r.out, m, std::regex(R"(\(AdamW step (\d+)\))"))) return -1;
  return std::stoll(m[1]);
}

// A learning rate too small to move the loss: what is left is the batches' noise, so some steps
// stand a standard deviation above the mean.
const std::vector<std::string> kNoisy = {"train.steps=90",       "optimizer.lr=1e-9",
                                         "schedule.min_lr=0",    "schedule.warmup_steps=0",
                                         "train.spike_zscore=1", "train.max_skipped_steps=90"};

TEST(Numerics, LossSpikesAreFlaggedAndSkippedAlikeOnEveryRank) {
  // 2 ranks, data-parallel with ZeRO-1: a rank that skipped alone would hang the all-gather.
  test::TempDir dir;
  std::vector<std::string> sets = kNoisy;
  sets.insert(sets.end(), {"parallel.tp=1", "parallel.pp=1", "parallel.ep=2", "parallel.dp=2",
                           "parallel.zero1=true"});
  const auto r = train(dir, 2, sets);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = metrics_of(dir);
  ASSERT_EQ(lines.size(), 90u);
  const int spikes = check_spikes(lines, 1.0, true);
  EXPECT_GE(spikes, 2) << "a noisy run with a threshold of 1 standard deviation";
  int warnings = 0;
  for (size_t at = r.out.find("warning: loss spike at step "); at != std::string::npos;
       at = r.out.find("warning: loss spike at step ", at + 1))
    ++warnings;
  EXPECT_EQ(warnings, spikes) << r.out;
  EXPECT_EQ(adam_steps_of(dir.file("checkpoints/step-0000090")), 90 - spikes)
      << "a skipped step must not reach the optimizer";
  std::printf("  %d of 40 steps after the warm-up were spikes (z > 1), skipped\n", spikes);
}

TEST(Numerics, LossSpikesUnderLogAreOnlyReported) {
  test::TempDir dir;
  std::vector<std::string> sets = kNoisy;
  sets.insert(sets.end(),
              {"parallel.tp=1", "parallel.pp=1", "parallel.ep=1", "train.spike_action=log"});
  const auto r = train(dir, 1, sets);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const int spikes = check_spikes(metrics_of(dir), 1.0, false);
  EXPECT_GE(spikes, 2);
  EXPECT_EQ(adam_steps_of(dir.file("checkpoints/step-0000090")), 90);
}

struct PerLayer {
  std::vector<double> layers;
  double other = 0, global = 0;
  std::vector<std::vector<double>> load;
};

PerLayer per_layer_step1(int ranks, const std::vector<std::string>& layout) {
  test::TempDir dir;
  std::vector<std::string> sets = {"train.steps=1", "log.per_layer=true"};
  sets.insert(sets.end(), layout.begin(), layout.end());
  const auto r = train(dir, ranks, sets);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto lines = metrics_of(dir);
  if (lines.size() != 1) {
    ADD_FAILURE() << "no metrics line";
    return {};
  }
  const json& j = lines[0];
  return {j["grad_norm_layers"].get<std::vector<double>>(), j["grad_norm_other"].get<double>(),
          j["grad_norm"].get<double>(), j["expert_load"].get<std::vector<std::vector<double>>>()};
}

TEST(Numerics, PerLayerMetricsAreTheOneRankValuesAtEveryLayout) {
  const PerLayer one = per_layer_step1(1, {"parallel.tp=1", "parallel.pp=1", "parallel.ep=1"});
  ASSERT_EQ(one.layers.size(), 4u);
  ASSERT_EQ(one.load.size(), 3u);  // tiny: one dense layer, then three MoE layers
  const struct {
    const char* name;
    std::vector<std::string> layout;
  } layouts[] = {
      {"tp2", {"parallel.tp=2", "parallel.pp=1", "parallel.ep=1"}},
      {"pp2", {"parallel.tp=1", "parallel.pp=2", "parallel.ep=1"}},
      {"ep2", {"parallel.tp=1", "parallel.pp=1", "parallel.ep=2"}},
      {"dp2 zero1", {"parallel.tp=1", "parallel.pp=1", "parallel.ep=1", "parallel.zero1=true"}},
      {"cp2", {"parallel.tp=1", "parallel.pp=1", "parallel.ep=1", "parallel.cp=2"}},
  };
  const auto check = [](const PerLayer& p, const std::string& what) {
    double sq = p.other * p.other;
    for (double n : p.layers) sq += n * n;
    EXPECT_NEAR(sq, p.global * p.global, 1e-9 * p.global * p.global) << what;
    for (const auto& layer : p.load) {
      double tokens = 0;
      for (double t : layer) {
        EXPECT_EQ(t, std::round(t)) << what;
        tokens += t;
      }
      EXPECT_EQ(tokens, 16 * 128 * 2) << what << ": global_batch 16 x seq_len 128 x top_k 2";
    }
  };
  check(one, "1 rank");
  for (const auto& [name, layout] : layouts) {
    const PerLayer p = per_layer_step1(2, layout);
    ASSERT_EQ(p.layers.size(), one.layers.size()) << name;
    check(p, name);
    double worst = std::abs(p.other - one.other) / one.other;
    size_t worst_at = 4;
    for (size_t l = 0; l < one.layers.size(); ++l) {
      EXPECT_GT(one.layers[l], 0.0);
      const double rel = std::abs(p.layers[l] - one.layers[l]) / one.layers[l];
      if (rel > worst) worst = rel, worst_at = l;
    }
    EXPECT_LT(worst, 1e-6) << name << ": max relative error " << worst << " at layer " << worst_at
                           << " (4 = the other parameters)";
    EXPECT_EQ(p.load, one.load) << name;
    std::printf("  %s: per-layer gradient norms within %.1e of one rank's; loads equal\n", name,
                worst);
  }
}

}  // namespace
}  // namespace tmt
