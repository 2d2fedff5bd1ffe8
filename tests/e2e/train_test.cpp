// Whole runs of `tramontane train`: the default recipe, at its own layout (tp2 pp2 ep2 on 4 ranks,
// as scripts/train.sh starts it), learns its synthetic data down to near the optimal loss, and its
// loss curve is the one-rank run's; training on prepared shards lowers the validation loss; bad
// data files stop the run with one error line naming the file; diverging runs stop after
// max_skipped_steps.
//
// timeout: 900
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "data/shard.h"
#include "tests/support/run.h"
#include "tests/support/temp_dir.h"

namespace tmt {
namespace {

std::vector<nlohmann::json> read_metrics(const std::string& dir) {
  std::ifstream in(dir + "/metrics.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(nlohmann::json::parse(l));
  return lines;
}


// The tiny recipe on `ranks` ranks: 4 is its own layout, 1 the same model on one rank.
test::RunResult train(const std::vector<std::string>& sets, double timeout_s = 300,
                      int ranks = 1) {
  std::vector<std::string> argv;
  if (ranks > 1) {
    // as scripts/train.sh does: more ranks than cores, one thread each
    argv = {TMT_MPIEXEC,   "-n", std::to_string(ranks), "--oversubscribe", "--bind-to",
            "none",        "-x", "OMP_NUM_THREADS=1",   "-x",              "OPENBLAS_NUM_THREADS=1"};
  }
  for (const std::string& a : {test::tramontane_binary(), std::string("train"),
                              test::source_path("recipes/tiny.yaml")}) {
    argv.push_back(a);
  }
  std::vector<std::string> all = sets;
  if (ranks == 1) all.insert(all.end(), {"parallel.tp=1", "parallel.pp=1", "parallel.ep=1"});
  for (const auto& s : all) {
    argv.push_back("--set");
    argv.push_back(s);
  }
  return test::run_command(argv, timeout_s);
}

TEST(Train, TinyRecipeLearnsItsSyntheticDataNearlyOptimally) {
  test::TempDir dir;
  const auto r = train({"run.dir=" + dir.path().string()}, 600, 4);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex(R"(optimal loss is ([0-9.]+))"))) << r.out;
  const double optimal = std::stod(m[1]);
  const auto metrics = read_metrics(dir.path().string());
  ASSERT_EQ(metrics.size(), 400u);
  const double first = metrics.front()["lm_loss"];
  const double last = metrics.back()["lm_loss"];
  const double val = metrics.back()["val_loss"];
  EXPECT_NEAR(first, std::log(256.0), 0.02 * std::log(256.0));
  EXPECT_LT(last, 1.10 * optimal) << "optimal " << optimal;
  EXPECT_LT(val, 1.10 * optimal) << "optimal " << optimal;
  EXPECT_GT(last, 0.97 * optimal) << "below the entropy rate: the loss is wrong";
  for (const auto& line : metrics) {
    for (const char* key : {"step", "loss", "lm_loss", "aux_loss", "lr", "grad_norm", "tokens",
                            "tokens_per_s", "step_time_s"}) {
      ASSERT_TRUE(line.contains(key)) << key;
    }
    EXPECT_FALSE(line["skipped"].get<bool>());
  }
  EXPECT_NE(r.out.find("tok/s"), std::string::npos);
  std::ifstream resolved(dir.file("recipe.resolved.yaml"));
  EXPECT_TRUE(resolved.good());
}

TEST(Train, TinyLayoutOnFourRanksFollowsTheOneRankLossCurve) {
  test::TempDir one, four;
  const std::vector<std::string> sets = {"train.steps=60", "log.eval_every=30"};
  auto with_dir = [&](const test::TempDir& d) {
    auto s = sets;
    s.push_back("run.dir=" + d.path().string());
    return s;
  };
  const auto r1 = train(with_dir(one), 300, 1);
  const auto r4 = train(with_dir(four), 300, 4);
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  ASSERT_EQ(r4.exit_code, 0) << r4.err;
  EXPECT_NE(r4.out.find("tp 2 x dp 1 x pp 2, ep 2"), std::string::npos) << r4.out;
  const auto a = read_metrics(one.path().string()), b = read_metrics(four.path().string());
  ASSERT_EQ(a.size(), 60u);
  ASSERT_EQ(b.size(), 60u);
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = a[i]["loss"], y = b[i]["loss"];
    worst = std::max(worst, std::fabs(x - y) / x);
  }
  // fp32 reordering only (the layouts compute the same run); 60 steps let it grow a little
  EXPECT_LT(worst, 1e-4);
  EXPECT_NEAR(a.back()["val_loss"].get<double>(), b.back()["val_loss"].get<double>(), 1e-4);
  EXPECT_LT(a.back()["loss"].get<double>(), a.front()["loss"].get<double>() - 1.0);
  std::printf("  tiny, 60 steps: worst per-step loss difference 4 ranks vs 1: %.1e\n", worst);
}

TEST(Train, ShardsFromPrepareLowerTheValidationLoss) {
  test::TempDir dir;
  // Text with structure a small model can pick up: numbered lines over a few recurring sentences.
  const char* sentences[] = {
      "the north wind blows cold over the sea", "a tramontane clears the sky by morning",
      "experts route tokens and the router learns", "every layout computes the same run"};
  {
    std::ofstream text(dir.file("text.txt"));
    for (int i = 0; i < 4000; ++i)
      text << "line " << i % 97 << ": " << sentences[(i * 7) % 4] << ".\n";
  }
  std::vector<std::string> argv = {
      test::tramontane_binary(), "prepare",           "--tokenizer", "bytes", "--out",
      dir.file("data"),          dir.file("text.txt")};
  const auto p = test::run_command(argv);
  ASSERT_EQ(p.exit_code, 0) << p.err;
  const auto r = train({"run.dir=" + dir.file("run"), "data.source=shards",
                        "data.paths=[" + dir.file("data/train") + "]", "train.steps=60",
                        "log.eval_every=20", "schedule.warmup_steps=5"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<double> val;
  for (const auto& line : read_metrics(dir.file("run"))) {
    if (line.contains("val_loss")) val.push_back(line["val_loss"]);
  }
  ASSERT_EQ(val.size(), 3u);
  EXPECT_LT(val.back(), val.front() - 0.5)
      << "validation loss did not fall: " << val.front() << " -> " << val.back();
}

TEST(Train, BadDataStopsWithOneErrorNamingTheFile) {
  test::TempDir dir;
  std::vector<uint32_t> tokens(5000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(i % 200);
  write_shard(dir.file("good.bin"), tokens, 256);
  std::ifstream in(dir.file("good.bin"), std::ios::binary);
  const std::string good{std::istreambuf_iterator<char>(in), {}};
  auto put = [&](const std::string& name, const std::string& bytes) {
    std::ofstream(dir.file(name), std::ios::binary) << bytes;
    return dir.file(name);
  };
  std::string version = good;
  version[8] = 2;
  tokens[1234] = 300;
  write_shard(dir.file("big_token.bin"), tokens, 0);
  write_shard(dir.file("short.bin"), std::vector<uint32_t>(50, 1), 256);
  struct Case {
    std::string path, expect;
  };
  const std::vector<Case> cases = {
      {dir.file("missing.bin"), "does not exist"},
      {put("magic.bin", "NOTASHRD" + good.substr(8)), "bad magic"},
      {put("version.bin", version), "unsupported shard format version 2"},
      {put("truncated.bin", good.substr(0, good.size() - 3)), "truncated"},
      {dir.file("big_token.bin"),
       "token 300 at index 1234 (byte offset 2500) is >= model.vocab_size 256"},
      {dir.file("short.bin"), "fewer than data.seq_len + 1 = 129"},
  };
  for (const Case& c : cases) {
    const auto r =
        train({"run.dir=" + dir.file("run"), "data.source=shards", "data.paths=[" + c.path + "]",
               "data.val_paths=[" + dir.file("good.bin") + "]"});
    EXPECT_EQ(r.exit_code, 2) << c.path << "\n" << r.err;
    const auto errors = test::error_lines(r.err);
    ASSERT_EQ(errors.size(), 1u) << c.path << "\n" << r.err;
    EXPECT_NE(errors[0].find(c.path), std::string::npos) << errors[0];
    EXPECT_NE(errors[0].find(c.expect), std::string::npos) << errors[0];
  }
}

TEST(Train, DivergingRunStopsAfterMaxSkippedSteps) {
  test::TempDir dir;
  const auto r =
      train({"run.dir=" + dir.path().string(), "optimizer.lr=1e30", "optimizer.grad_clip=0",
             "schedule.warmup_steps=0", "train.max_skipped_steps=3", "train.steps=50"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const auto errors = test::error_lines(r.err);
  ASSERT_EQ(errors.size(), 1u) << r.err;
  EXPECT_NE(errors[0].find("4 steps in a row had a non-finite loss"), std::string::npos)
      << errors[0];
  const auto metrics = read_metrics(dir.path().string());
  ASSERT_GE(metrics.size(), 4u);
  for (size_t i = metrics.size() - 4; i < metrics.size(); ++i)
    EXPECT_TRUE(metrics[i]["skipped"].get<bool>());
}

}  // namespace
}  // namespace tmt
