// Checkpoints that cannot be written, through the binary, without needing a full disk: the last
// rank's shard write fails with ENOSPC (TMT_FAULT_ENOSPC_IN_SAVE, trainer/checkpoint/format.h),
// so rank 0, whose own write succeeded, must not publish. checkpoint.on_error stop ends the run
// with exit 2 and one error line; continue warns, records the failure in metrics.jsonl and writes
// the next checkpoint, which matches an undisturbed run's. The keep-N pruning never removes the
// checkpoint `latest` names, even beside newer ones. (checkpoint_tmpfs_test fills a real
// file system.)
//
// timeout: 600
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/run.h"
#include "tests/support/temp_dir.h"

namespace tmt {
namespace {
namespace fs = std::filesystem;

// A short tiny run on 2 ranks (tp1 ep2: both ranks write a shard), a checkpoint every `every`
// steps; enospc_in_save > 0 makes the last rank's write of that step's checkpoint fail.
std::vector<std::string> train_argv(const std::string& dir, int steps, int every,
                                    const std::vector<std::string>& extra = {},
                                    int enospc_in_save = 0) {
  std::vector<std::string> argv = {TMT_MPIEXEC,
                                   "-n",
                                   "2",
                                   "--oversubscribe",
                                   "--bind-to",
                                   "none",
                                   "-x",
                                   "OMP_NUM_THREADS=1",
                                   "-x",
                                   "OPENBLAS_NUM_THREADS=1",
                                   "-x",
                                   "TMT_FAULT_ENOSPC_IN_SAVE=" + std::to_string(enospc_in_save),
                                   test::tramontane_binary(),
                                   "train"};
  for (const std::string& s :
       {std::string("parallel.tp=1"), std::string("parallel.pp=1"), std::string("parallel.ep=2"),
        "train.steps=" + std::to_string(steps), std::string("schedule.warmup_steps=1"),
        "checkpoint.every=" + std::to_string(every), std::string("log.eval_every=0"),
        "run.dir=" + dir}) {
    argv.push_back("--set");
    argv.push_back(s);
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

std::string latest_of(const test::TempDir& dir) {
  std::ifstream in(dir.file("checkpoints/latest"));
  std::string name;
  in >> name;
  return name;
}

// The checkpoints directory's entries other than `latest`, sorted.
std::vector<std::string> entries_of(const test::TempDir& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.file("checkpoints"))) {
    if (e.path().filename() != "latest") names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

nlohmann::json metrics_line(const test::TempDir& dir, int64_t step) {
  std::ifstream in(dir.file("metrics.jsonl"));
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j["step"] == step) return j;
  }
  return nullptr;
}

std::string tensors_of(const std::string& checkpoint) {
  const auto r = test::run_command({test::tramontane_binary(), "inspect", checkpoint, "--tensors"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out;
}

TEST(CheckpointStorage, StopEndsTheRunWithOneErrorAndKeepsThePreviousCheckpoint) {
  test::TempDir dir;
  const auto r = test::run_command(
      train_argv(dir.path().string(), 6, 2, {"--set", "checkpoint.keep=1"}, 4), 300);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  const auto errors = test::error_lines(r.err);
  ASSERT_EQ(errors.size(), 1u) << r.err;
  // The path of the rank that failed and the system's reason.
  EXPECT_NE(errors[0].find("checkpoints/step-0000004.partial/rank-00001.h5"), std::string::npos)
      << errors[0];
  EXPECT_NE(errors[0].find("No space left on device"), std::string::npos) << errors[0];
  EXPECT_EQ(latest_of(dir), "step-0000002");
  EXPECT_EQ(entries_of(dir), std::vector<std::string>{"step-0000002"}) << "partial files left";
  const auto line = metrics_line(dir, 4);
  ASSERT_TRUE(line.is_object());
  EXPECT_NE(line.value("checkpoint_error", "").find("No space left on device"), std::string::npos);
  EXPECT_TRUE(metrics_line(dir, 5).is_null()) << "trained on after the failed checkpoint";

  // The previous checkpoint resumes: the run ends with the parameters of one never disturbed.
  const auto resumed = test::run_command(train_argv(dir.path().string(), 6, 2), 300);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("resumed from " + dir.file("checkpoints/step-0000002") + " at step 2"),
            std::string::npos)
      << resumed.out;
  test::TempDir straight;
  const auto s = test::run_command(train_argv(straight.path().string(), 6, 2), 300);
  ASSERT_EQ(s.exit_code, 0) << s.err;
  const std::string want = tensors_of(straight.file("checkpoints/step-0000006"));
  ASSERT_GT(want.size(), 1000u);
  EXPECT_EQ(tensors_of(dir.file("checkpoints/step-0000006")), want);
}

TEST(CheckpointStorage, ContinueWarnsTrainsOnAndWritesTheNextCheckpoint) {
  test::TempDir dir, straight;
  const auto r = test::run_command(
      train_argv(dir.path().string(), 6, 2, {"--set", "checkpoint.on_error=continue"}, 4), 300);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(test::error_lines(r.err).empty()) << r.err;
  EXPECT_NE(r.out.find("warning: checkpoint step-0000004 not written: "), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("rank-00001.h5: No space left on device"), std::string::npos) << r.out;
  EXPECT_TRUE(metrics_line(dir, 4).contains("checkpoint_error"));
  EXPECT_FALSE(metrics_line(dir, 6).contains("checkpoint_error"));
  EXPECT_EQ(latest_of(dir), "step-0000006");
  EXPECT_EQ(entries_of(dir), (std::vector<std::string>{"step-0000002", "step-0000006"}));

  const auto s = test::run_command(train_argv(straight.path().string(), 6, 2), 300);
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(tensors_of(dir.file("checkpoints/step-0000006")),
            tensors_of(straight.file("checkpoints/step-0000006")));
}

TEST(CheckpointStorage, TheRunsLastCheckpointMustBeWrittenEvenUnderContinue) {
  test::TempDir dir;
  const auto r = test::run_command(
      train_argv(dir.path().string(), 4, 2, {"--set", "checkpoint.on_error=continue"}, 4), 300);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  ASSERT_EQ(test::error_lines(r.err).size(), 1u) << r.err;
  EXPECT_EQ(latest_of(dir), "step-0000002");
  EXPECT_EQ(entries_of(dir), std::vector<std::string>{"step-0000002"});
}

TEST(CheckpointStorage, PruningKeepsTheCheckpointLatestNamesBesideNewerOnes) {
  // A run to step 8 leaves steps 4, 6 and 8; a rerun resumed from step 4 with keep 2 writes
  // step 5 and then step 6, each `latest` when written, beside the newer step 8: each is kept
  // with the newest other one.
  test::TempDir dir;
  const auto first =
      test::run_command(train_argv(dir.path().string(), 8, 2, {"--set", "checkpoint.keep=3"}), 300);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  ASSERT_EQ(entries_of(dir),
            (std::vector<std::string>{"step-0000004", "step-0000006", "step-0000008"}));
  const auto rerun = test::run_command(
      train_argv(dir.path().string(), 6, 1,
                 {"--set", "checkpoint.keep=2", "--resume", dir.file("checkpoints/step-0000004")}),
      300);
  ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
  EXPECT_EQ(latest_of(dir), "step-0000006");
  EXPECT_EQ(entries_of(dir), (std::vector<std::string>{"step-0000006", "step-0000008"}));
  const auto inspect = test::run_command(
      {test::tramontane_binary(), "inspect", dir.file("checkpoints/step-0000006")});
  EXPECT_EQ(inspect.exit_code, 0) << inspect.err;
}

}  // namespace
}  // namespace tmt
