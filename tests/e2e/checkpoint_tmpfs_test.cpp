// A run directory on a small tmpfs that fills up during a checkpoint, through the binary on two
// ranks. The previous checkpoint stays `latest`, intact and resumable, the partial files are gone,
// and checkpoint.on_error decides between stopping (exit 2, one error line naming the shard and
// "No space left on device") and training on; a read-only checkpoints directory stops the run
// naming it. Needs permission to mount (root, or a container allowed to); without it main says
// why and exits 77, which ctest reports as "Not Run".
// checkpoint_storage_test covers the same behaviour everywhere with an injected fault.
//
// timeout: 600
//
// skip_return_code: 77
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/run.h"
#include "tests/support/temp_dir.h"

namespace tmt {
namespace {
namespace fs = std::filesystem;

// A tmpfs of `bytes` mounted on a fresh directory while it lives.
class SmallTmpfs {
 public:
  explicit SmallTmpfs(size_t bytes) {
    const std::string options = "size=" + std::to_string(bytes);
    if (mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, options.c_str()) != 0) error_ = errno;
  }
  ~SmallTmpfs() {
    if (error_ == 0) umount(dir_.path().c_str());
  }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;
  int error() const { return error_; }  // errno of the mount, 0 when mounted
  std::string file(const std::string& name) const { return dir_.file(name); }

 private:
  test::TempDir dir_;
  int error_ = 0;
};

// The tiny model on 2 ranks (tp1 ep2: both write a shard of about 2 MB): a checkpoint every 2
// steps, keeping 1, so the second needs room beside the first.
std::vector<std::string> train_argv(const std::string& dir, int steps,
                                    const std::vector<std::string>& extra = {}) {
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
                                   test::tramontane_binary(),
                                   "train"};
  for (const std::string& s :
       {std::string("parallel.tp=1"), std::string("parallel.pp=1"), std::string("parallel.ep=2"),
        "train.steps=" + std::to_string(steps), std::string("schedule.warmup_steps=1"),
        std::string("checkpoint.every=2"), std::string("checkpoint.keep=1"),
        std::string("log.eval_every=0"), "run.dir=" + dir}) {
    argv.push_back("--set");
    argv.push_back(s);
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

// One checkpoint of the tiny model is about 4.2 MB: room for one, not two.
constexpr size_t kTmpfsBytes = 6u << 20;

std::string latest_in(const std::string& run) {
  std::ifstream in(run + "/checkpoints/latest");
  std::string name;
  in >> name;
  return name;
}

std::vector<std::string> entries_in(const std::string& run) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(run + "/checkpoints")) {
    if (e.path().filename() != "latest") names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

nlohmann::json metrics_line(const std::string& run, int64_t step) {
  std::ifstream in(run + "/metrics.jsonl");
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

TEST(CheckpointTmpfs, StopLeavesThePreviousCheckpointWhichResumes) {
  SmallTmpfs fs_small(kTmpfsBytes);
  ASSERT_EQ(fs_small.error(), 0) << std::strerror(fs_small.error());
  const std::string run = fs_small.file("run");
  const auto r = test::run_command(train_argv(run, 6), 300);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  const auto errors = test::error_lines(r.err);
  ASSERT_EQ(errors.size(), 1u) << r.err;
  EXPECT_NE(errors[0].find(run + "/checkpoints/step-0000004.partial/rank-0000"), std::string::npos)
      << errors[0];
  EXPECT_NE(errors[0].find("No space left on device"), std::string::npos) << errors[0];
  EXPECT_EQ(latest_in(run), "step-0000002");
  EXPECT_EQ(entries_in(run), std::vector<std::string>{"step-0000002"}) << "partial files left";
  // The space the partial files took is free again: one checkpoint's worth is used.
  EXPECT_LT(fs::space(run).available, kTmpfsBytes) << "nothing written?";
  EXPECT_GT(fs::space(run).available, kTmpfsBytes / 4) << "the partial files still take space";

  // The previous checkpoint is intact: the run, moved to a disk with room, resumes from it and
  // ends with the parameters of a run never disturbed.
  test::TempDir moved, straight;
  fs::copy(run, moved.path(), fs::copy_options::recursive);
  const auto resumed = test::run_command(train_argv(moved.path().string(), 6), 300);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("at step 2"), std::string::npos) << resumed.out;
  const auto s = test::run_command(train_argv(straight.path().string(), 6), 300);
  ASSERT_EQ(s.exit_code, 0) << s.err;
  const std::string want = tensors_of(straight.file("checkpoints/step-0000006"));
  ASSERT_GT(want.size(), 1000u);
  EXPECT_EQ(tensors_of(moved.file("checkpoints/step-0000006")), want);
}

TEST(CheckpointTmpfs, ContinueTrainsOnAndFailsOnlyOnTheLastCheckpoint) {
  SmallTmpfs fs_small(kTmpfsBytes);
  ASSERT_EQ(fs_small.error(), 0) << std::strerror(fs_small.error());
  const std::string run = fs_small.file("run");
  const auto r =
      test::run_command(train_argv(run, 6, {"--set", "checkpoint.on_error=continue"}), 300);
  // Step 4's checkpoint fails with a warning and training goes on; step 6's (the last) fails too,
  // and the run's last checkpoint must be written: exit 2.
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.out.find("warning: checkpoint step-0000004 not written: "), std::string::npos)
      << r.out;
  const auto errors = test::error_lines(r.err);
  ASSERT_EQ(errors.size(), 1u) << r.err;
  EXPECT_NE(errors[0].find("checkpoint step-0000006 not written: "), std::string::npos)
      << errors[0];
  EXPECT_NE(errors[0].find("No space left on device"), std::string::npos) << errors[0];
  for (int64_t step : {4, 6}) {
    const auto line = metrics_line(run, step);
    ASSERT_TRUE(line.is_object()) << "step " << step;
    EXPECT_NE(line.value("checkpoint_error", "").find("No space left on device"), std::string::npos)
        << "step " << step;
  }
  EXPECT_TRUE(metrics_line(run, 5).is_object()) << "trained on after the failed checkpoint";
  EXPECT_EQ(latest_in(run), "step-0000002");
  EXPECT_EQ(entries_in(run), std::vector<std::string>{"step-0000002"}) << "partial files left";
}

TEST(CheckpointTmpfs, ReadOnlyCheckpointsDirectoryStopsNamingIt) {
  // A first run leaves step 2; then checkpoints/ becomes read-only (a read-only bind mount of
  // itself) and a resumed run reaches its checkpoint at step 4.
  test::TempDir dir;
  const std::string run = dir.path().string(), checkpoints = run + "/checkpoints";
  const auto first = test::run_command(train_argv(run, 2), 300);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  ASSERT_EQ(mount(checkpoints.c_str(), checkpoints.c_str(), nullptr, MS_BIND, nullptr), 0)
      << std::strerror(errno);
  const int ro =
      mount(nullptr, checkpoints.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr);
  const int ro_errno = errno;
  const auto r = ro == 0 ? test::run_command(train_argv(run, 4), 300) : test::RunResult{};
  umount(checkpoints.c_str());
  ASSERT_EQ(ro, 0) << std::strerror(ro_errno);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.out.find("at step 2"), std::string::npos) << r.out;
  const auto errors = test::error_lines(r.err);
  ASSERT_EQ(errors.size(), 1u) << r.err;
  EXPECT_NE(errors[0].find(checkpoints + "/step-0000004.partial: Read-only file system"),
            std::string::npos)
      << errors[0];
  EXPECT_EQ(latest_in(run), "step-0000002");
  EXPECT_EQ(entries_in(run), std::vector<std::string>{"step-0000002"});
}

}  // namespace
}  // namespace tmt

// Runs the tests where a tmpfs can be mounted; elsewhere exits 77 ("Not Run").
int main(int argc, char** argv) {
  {
    tmt::test::TempDir probe;
    if (mount("tmpfs", probe.path().c_str(), "tmpfs", 0, "size=65536") != 0) {
      std::printf("SKIPPED: cannot mount a tmpfs here (%s)\n", std::strerror(errno));
      return 77;
    }
    umount(probe.path().c_str());
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
