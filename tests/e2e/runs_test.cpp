// Operations on run directories: two short runs of the tiny recipe (one rank), then `tramontane
// runs` lists both with the last step and loss their metrics.jsonl holds (table and --json), tells
// a stopped run from a running one by its files and skips a damaged metrics line; a missing or
// empty directory is one `error:` line and exit 2; `train`'s console line shows the ETA and the
// checkpoint's age; scripts/plot.py draws both runs into one PNG (skipped without Debian's
// python3-matplotlib) and exits 2 on a missing run.
//
// timeout: 300
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "tests/support/run.h"
#include "tests/support/temp_dir.h"

namespace tmt {
namespace {

namespace fs = std::filesystem;

std::vector<nlohmann::json> read_metrics(const fs::path& dir) {
  std::ifstream in(dir / "metrics.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(nlohmann::json::parse(l));
  return lines;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> lines;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

// The line of `out` that starts with `run` followed by a space.
std::string row_of(const std::string& out, const std::string& run) {
  for (const std::string& l : lines_of(out)) {
    if (l.rfind(run + " ", 0) == 0) return l;
  }
  return "";
}

// Two finished runs under one directory, trained once for every test: alpha (12 steps, a
// checkpoint every 5, validation every 6) and sweep/beta (8 steps, validation off, only the final
// checkpoint, then resumed for a 9th).
struct TwoRuns {
  test::TempDir root;
  fs::path runs = root.path() / "runs";
  fs::path alpha = runs / "alpha", beta = runs / "sweep" / "beta";
  test::RunResult alpha_run, beta_run, beta_resumed;
  TwoRuns() {
    const auto train = [](const fs::path& dir, const std::vector<std::string>& sets) {
      std::vector<std::string> args = {"train", test::source_path("recipes/tiny.yaml")};
      for (const std::string& s : std::vector<std::string>{
               "parallel.tp=1", "parallel.pp=1", "parallel.ep=1", "schedule.warmup_steps=2",
               "log.every=4", "train.global_batch=8", "run.dir=" + dir.string()}) {
        args.insert(args.end(), {"--set", s});
      }
      for (const std::string& s : sets) args.insert(args.end(), {"--set", s});
      return test::run_tramontane(args, 1, 120);
    };
    alpha_run = train(alpha, {"train.steps=12", "checkpoint.every=5", "log.eval_every=6"});
    beta_run = train(beta, {"train.steps=8", "checkpoint.every=0", "log.eval_every=0"});
    beta_resumed = train(beta, {"train.steps=9", "checkpoint.every=0", "log.eval_every=0"});
  }
};

const TwoRuns& two_runs() {
  static const TwoRuns runs;
  return runs;
}

TEST(Runs, ListsEachRunWithTheLastStepAndLossOfItsMetrics) {
  const TwoRuns& t = two_runs();
  ASSERT_EQ(t.alpha_run.exit_code, 0) << t.alpha_run.err;
  ASSERT_EQ(t.beta_run.exit_code, 0) << t.beta_run.err;
  ASSERT_EQ(t.beta_resumed.exit_code, 0) << t.beta_resumed.err;
  const auto alpha = read_metrics(t.alpha), beta = read_metrics(t.beta);
  ASSERT_EQ(alpha.size(), 12u);
  ASSERT_EQ(beta.size(), 9u);

  const auto r = test::run_tramontane({"runs", t.runs.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(lines_of(r.out).size(), 3u) << r.out;  // the header and two runs
  const std::string a = row_of(r.out, t.alpha.string()), b = row_of(r.out, t.beta.string());
  ASSERT_FALSE(a.empty()) << r.out;
  ASSERT_FALSE(b.empty()) << r.out;
  EXPECT_NE(a.find(" 12/12 "), std::string::npos) << a;
  EXPECT_NE(a.find(fmt::format(" {:.4f} ", alpha.back()["loss"].get<double>())), std::string::npos)
      << a;
  EXPECT_NE(a.find(fmt::format(" {:.4f} ", alpha.back()["val_loss"].get<double>())),
            std::string::npos)
      << a;
  EXPECT_NE(a.find(" 12 ("), std::string::npos) << a;  // the final checkpoint
  EXPECT_NE(a.find(" finished"), std::string::npos) << a;
  EXPECT_NE(b.find(" 9/9 "), std::string::npos) << b;
  EXPECT_NE(b.find(fmt::format(" {:.4f} ", beta.back()["loss"].get<double>())), std::string::npos)
      << b;
  EXPECT_NE(b.find(" 9 ("), std::string::npos) << b;
  EXPECT_NE(b.find(" finished"), std::string::npos) << b;

  const auto j = test::run_tramontane({"runs", t.runs.string(), "--json"});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  const nlohmann::json doc = nlohmann::json::parse(j.out);
  ASSERT_EQ(doc["runs"].size(), 2u) << j.out;
  for (const auto& [dir, metrics] : {std::pair{t.alpha, alpha}, std::pair{t.beta, beta}}) {
    const nlohmann::json* run = nullptr;
    for (const nlohmann::json& e : doc["runs"])
      if (e["run"] == dir.string()) run = &e;
    ASSERT_NE(run, nullptr) << dir << " not in " << j.out;
    EXPECT_EQ((*run)["step"], metrics.back()["step"]);
    EXPECT_EQ((*run)["total_steps"], metrics.back()["step"]);
    EXPECT_EQ((*run)["loss"].get<double>(), metrics.back()["loss"].get<double>());
    EXPECT_EQ((*run)["tokens_per_s"].get<double>(), metrics.back()["tokens_per_s"].get<double>());
    EXPECT_EQ((*run)["checkpoint"]["step"], metrics.back()["step"]);
    EXPECT_GE((*run)["checkpoint"]["age_s"].get<double>(), 0);
    EXPECT_EQ((*run)["state"], "finished");
    EXPECT_EQ((*run)["ranks"], 1);
    EXPECT_EQ((*run)["damaged_lines"], 0);
  }
  EXPECT_EQ(doc["runs"][0]["val_loss"].get<double>(), alpha.back()["val_loss"].get<double>());
  EXPECT_EQ(doc["runs"][0]["val_step"], 12);
  EXPECT_TRUE(doc["runs"][1]["val_loss"].is_null());
}

// A copy of alpha whose newest checkpoint is step 10 of 12 and whose metrics.jsonl ends in a line
// cut short (kill -9): stopped when the file is an hour old, running when it was just written.
TEST(Runs, SkipsADamagedLineAndTellsAStoppedRunFromARunningOne) {
  const TwoRuns& t = two_runs();
  ASSERT_EQ(t.alpha_run.exit_code, 0) << t.alpha_run.err;
  test::TempDir dir;
  for (const char* name : {"stopped", "running"}) {
    const fs::path run = dir.path() / name;
    fs::copy(t.alpha, run, fs::copy_options::recursive);
    std::ofstream(run / "checkpoints" / "latest") << "step-0000010\n";
    std::ofstream(run / "metrics.jsonl", std::ios::app) << R"({"step": 13, "loss": 4.)";
  }
  fs::last_write_time(dir.path() / "stopped" / "metrics.jsonl",
                      fs::file_time_type::clock::now() - std::chrono::hours(1));
  const auto r = test::run_tramontane({"runs", dir.path().string(), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  ASSERT_EQ(doc["runs"].size(), 2u) << r.out;
  const double loss = read_metrics(t.alpha).back()["loss"];
  for (const nlohmann::json& run : doc["runs"]) {
    const bool stopped = run["run"] == (dir.path() / "stopped").string();
    EXPECT_EQ(run["state"], stopped ? "stopped" : "running") << run.dump();
    EXPECT_EQ(run["step"], 12) << run.dump();
    EXPECT_EQ(run["loss"].get<double>(), loss);
    EXPECT_EQ(run["damaged_lines"], 1);
    EXPECT_EQ(run["checkpoint"]["step"], 10);
  }
  const auto table = test::run_tramontane({"runs", dir.path().string()});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(row_of(table.out, (dir.path() / "stopped").string()).find(" stopped"),
            std::string::npos)
      << table.out;
}

TEST(Runs, AMissingOrEmptyDirectoryIsOneErrorLine) {
  test::TempDir empty;
  const std::string missing = empty.file("no-such-dir");
  for (const std::string& dir : {missing, empty.path().string()}) {
    for (const bool json : {false, true}) {
      std::vector<std::string> args = {"runs", dir};
      if (json) args.push_back("--json");
      const auto r = test::run_tramontane(args);
      EXPECT_EQ(r.exit_code, 2) << dir << "\n" << r.err;
      EXPECT_TRUE(r.out.empty()) << r.out;
      const auto lines = lines_of(r.err);
      ASSERT_EQ(lines.size(), 1u) << r.err;
      EXPECT_EQ(lines[0].rfind("error: " + dir + ": ", 0), 0u) << lines[0];
    }
  }
}

// The console line of `train`: `eta` from the recent step times, then the checkpoint's age (none
// before the first; a resumed run's is the age of the checkpoint it resumed from).
TEST(Runs, TrainConsoleLineShowsTheEtaAndTheCheckpointAge) {
  const TwoRuns& t = two_runs();
  ASSERT_EQ(t.alpha_run.exit_code, 0) << t.alpha_run.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      t.alpha_run.out, m,
      std::regex(R"(step  1/12 \| .* \| eta (\d+h\d\dm|\d+m\d\ds|\d+s) \| ckpt none\n)")))
      << t.alpha_run.out;
  // The line of step 8 comes after the checkpoint of step 5.
  EXPECT_TRUE(std::regex_search(t.alpha_run.out,
                                std::regex(R"(step  8/12 \| .* \| eta \S+ \| ckpt \d+s ago\n)")))
      << t.alpha_run.out;
  ASSERT_EQ(t.beta_resumed.exit_code, 0) << t.beta_resumed.err;
  EXPECT_TRUE(std::regex_search(t.beta_resumed.out,
                                std::regex(R"(step 9/9 \| .* \| eta 0s \| ckpt \d+s ago\n)")))
      << t.beta_resumed.out;
}

bool has_matplotlib() {
  return std::system("/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1") == 0;
}

uint32_t big_endian(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

TEST(Plot, DrawsBothRunsIntoOnePngAndRefusesAMissingRun) {
  if (!has_matplotlib()) GTEST_SKIP() << "python3-matplotlib is not installed (scripts/setup.sh)";
  const TwoRuns& t = two_runs();
  ASSERT_EQ(t.alpha_run.exit_code, 0) << t.alpha_run.err;
  test::TempDir out;
  const std::string png = out.file("both.png"), plot = test::source_path("scripts/plot.py");
  const auto r = test::run_command(
      {"/usr/bin/python3", plot, t.alpha.string(), t.beta.string(), "-o", png}, 120);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(fs::exists(png));
  EXPECT_GT(fs::file_size(png), 20000u);
  std::ifstream in(png, std::ios::binary);
  unsigned char head[24] = {};
  in.read(reinterpret_cast<char*>(head), sizeof head);
  ASSERT_EQ(std::string(reinterpret_cast<char*>(head), 8), "\x89PNG\r\n\x1a\n");
  EXPECT_EQ(std::string(reinterpret_cast<char*>(head) + 12, 4), "IHDR");
  const uint32_t width = big_endian(head + 16), height = big_endian(head + 20);
  EXPECT_GE(width, 800u);
  EXPECT_GE(height, 500u);
  EXPECT_LE(width, 4000u);
  EXPECT_LE(height, 4000u);

  const std::string missing = out.file("no-such-run");
  const auto bad = test::run_command({"/usr/bin/python3", plot, t.alpha.string(), missing}, 60);
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  const auto errors = test::error_lines(bad.err);
  ASSERT_EQ(errors.size(), 1u) << bad.err;
  EXPECT_NE(errors[0].find(missing), std::string::npos) << errors[0];

  // Lines without the plotted keys.
  std::ofstream(out.file("metrics.jsonl")) << "{\"step\": 1, \"tokens\": 4}\n";
  const auto keyless = test::run_command({"/usr/bin/python3", plot, out.file("metrics.jsonl")}, 60);
  EXPECT_EQ(keyless.exit_code, 2) << keyless.err;
  ASSERT_EQ(test::error_lines(keyless.err).size(), 1u) << keyless.err;
  EXPECT_NE(keyless.err.find("loss"), std::string::npos) << keyless.err;
}

}  // namespace
}  // namespace tmt
