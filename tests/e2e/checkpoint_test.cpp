// Checkpoints through the binary: a multi-rank run killed (SIGKILL, the whole process group) at
// random moments and restarted each time ends with exactly the parameters of an uninterrupted run;
// damaged checkpoints are refused with exit 2 and one error line naming the file; any tensor reads
// from the index with h5py alone (when python3-h5py is installed).
//
// timeout: 900
#include <gtest/gtest.h>
#include <hdf5.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>

#include "tests/support/run.h"
#include "tests/support/temp_dir.h"

namespace tmt {
namespace {
namespace fs = std::filesystem;

// A short tiny run on 2 ranks (tp2 pp1 ep2), a checkpoint every `every` steps.
// kill_in_save > 0: rank 0 dies inside the save of that step (TMT_FAULT_KILL_IN_SAVE).
std::vector<std::string> train_argv(const std::string& dir, int steps, int every,
                                    const std::vector<std::string>& extra = {},
                                    int kill_in_save = 0) {
  std::vector<std::string> argv = {
      TMT_MPIEXEC, "-n",        "2", "--oversubscribe", "--bind-to", "none", "-x",
      "OMP_NUM_THREADS=1", "-x", "OPENBLAS_NUM_THREADS=1", "-x",
      "TMT_FAULT_KILL_IN_SAVE=" + std::to_string(kill_in_save), test::tramontane_binary(),
      "train"};
  for (const std::string& s : std::vector<std::string>{
           "parallel.tp=2", "parallel.pp=1", "parallel.ep=2", "train.steps=" + std::to_string(steps),
           "schedule.warmup_steps=1",
        "checkpoint.every=" + std::to_string(every), "log.eval_every=0", "run.dir=" + dir}) {
    argv.push_back("--set");
    argv.push_back(s);
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

std::string tensors_of(const std::string& checkpoint) {
  const auto r = test::run_command({test::tramontane_binary(), "inspect", checkpoint, "--tensors"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out;
}


TEST(Checkpoint, KilledAndRestartedRunEndsBitIdenticalToAnUninterruptedOne) {
  const int steps = 120, every = 1;
  test::TempDir straight, killed;
  const auto r = test::run_command(train_argv(straight.path().string(), steps, every), 300);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string want = tensors_of(straight.file("checkpoints/step-0000120"));
  ASSERT_GT(want.size(), 1000u);

  std::mt19937 rng(20261123);
  std::uniform_real_distribution<double> when(0.3, 1.6);
  int64_t last_resumed = 0, kills = 0, inside_writes = 0;
  for (int attempt = 0; attempt < 40; ++attempt) {
    // Kills 1-3 land inside a checkpoint write (rank 0 dies between the shards and the index);
    // kills 4-10 come from outside (SIGKILL to every process) at random moments.
    const bool kill = kills < 10;
    const int in_save = kills < 3 ? static_cast<int>(last_resumed) + 3 + 2 * kills : 0;
    const auto run = test::run_command(
        train_argv(killed.path().string(), steps, every, {}, in_save),
        in_save > 0 ? 120.0 : kill ? when(rng) : 300.0);
    // A restart never meets an incomplete checkpoint: it resumes from a complete one or starts.
    std::smatch m;
    if (std::regex_search(run.out, m, std::regex(R"(resumed from \S+ at step (\d+))"))) {
      const int64_t at = std::stoll(m[1]);
      EXPECT_GE(at, last_resumed);
      last_resumed = at;
    }
    if (run.timed_out || in_save > 0) {
      EXPECT_TRUE(run.timed_out || run.exit_code != 0) << "attempt " << attempt;
      ++kills;
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(killed.file("checkpoints"), ec)) {
        if (e.path().extension() == ".partial") ++inside_writes;
      }
      continue;
    }
    ASSERT_EQ(run.exit_code, 0) << "attempt " << attempt << "\n" << run.err;
    if (run.out.find("done: ") != std::string::npos) break;
  }
  EXPECT_EQ(kills, 10);
  EXPECT_EQ(tensors_of(killed.file("checkpoints/step-0000120")), want)
      << "the interrupted run's final parameters differ";
  std::printf("  10 kills (%ld inside a checkpoint write), last resume at step %ld: final "
              "tensors bit-identical\n",
              static_cast<long>(inside_writes), static_cast<long>(last_resumed));
}

// Sends `sig` after 4 s; the run must finish its step, save, and exit 0 soon after.
void expect_signal_saves(const std::vector<std::string>& argv, const test::TempDir& dir, int sig,
                         const char* what) {
  const auto start = std::chrono::steady_clock::now();
  const auto r = test::run_command(argv, 4.0, "", sig);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0) << what << "\n" << r.err;
  EXPECT_LT(took, 4.0 + 20.0) << what << ": saving after the signal took too long";
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex(R"(stopped by a signal after step (\d+))")))
      << what << "\n" << r.out << r.err;
  std::ifstream latest(dir.file("checkpoints/latest"));
  std::string name;
  latest >> name;
  EXPECT_EQ(name, "step-" + std::string(7 - m[1].str().size(), '0') + m[1].str());
  std::printf("  %s at 4 s: saved %s and exited 0 after %.1f s\n", what, name.c_str(), took);
}

TEST(Checkpoint, SignalsFinishTheStepSaveAndExitZero) {
  // SIGUSR1 to mpirun and its 2 ranks (what Slurm's --signal and the batch script send)
  test::TempDir two;
  expect_signal_saves(train_argv(two.path().string(), 100000, 0), two, SIGUSR1, "SIGUSR1, 2 ranks");
  // SIGTERM to a rank (scancel, preemption)
  test::TempDir one;
  expect_signal_saves({test::tramontane_binary(), "train", "--set", "parallel.tp=1", "--set",
                       "parallel.pp=1", "--set", "parallel.ep=1", "--set", "train.steps=100000",
                       "--set", "run.dir=" + one.path().string()},
                      one, SIGTERM, "SIGTERM, 1 rank");
}

class DamagedCheckpoint : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    const auto r = test::run_command(
        train_argv(dir_->path().string(), 2, 0, {"--set", "parallel.tp=1", "--set", "parallel.ep=2"}),
        120);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }

  // A fresh copy of the checkpoint to damage.
  fs::path copy(const std::string& name) {
    const fs::path to = dir_->path() / name;
    fs::copy(dir_->path() / "checkpoints" / "step-0000002", to, fs::copy_options::recursive);
    return to;
  }

  // Resumes from `checkpoint` on one rank: must end with exit 2 and one error naming `blame`.
  void expect_refused(const fs::path& checkpoint, const std::string& blame,
                      const std::vector<std::string>& sets = {}) {
    std::vector<std::string> argv = {test::tramontane_binary(), "train", "--resume",
                                     checkpoint.string()};
    for (const std::string& s : std::vector<std::string>{
             "parallel.tp=1", "parallel.pp=1", "parallel.ep=1", "train.steps=4", "schedule.warmup_steps=1",
          "run.dir=" + (dir_->path() / "resumed").string()}) {
      argv.push_back("--set");
      argv.push_back(s);
    }
    for (const auto& s : sets) {
      argv.push_back("--set");
      argv.push_back(s);
    }
    const auto r = test::run_command(argv, 60);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    const auto errors = test::error_lines(r.err);
    ASSERT_EQ(errors.size(), 1u) << r.err;
    EXPECT_NE(errors[0].find(blame), std::string::npos) << errors[0];
  }

  static test::TempDir* dir_;
};
test::TempDir* DamagedCheckpoint::dir_ = nullptr;

TEST_F(DamagedCheckpoint, TheUndamagedCopyLoads) {
  const fs::path c = copy("good");
  const auto r = test::run_command({test::tramontane_binary(), "train", "--resume", c.string(),
                                    "--set", "parallel.tp=1", "--set", "parallel.pp=1", "--set",
                                    "parallel.ep=1", "--set", "train.steps=3", "--set",
                                    "schedule.warmup_steps=1", "--set",
                                    "run.dir=" + (c / "run").string()},
                                   60);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("resumed from"), std::string::npos) << r.out;
}

TEST_F(DamagedCheckpoint, TruncatedShard) {
  const fs::path c = copy("truncated");
  fs::resize_file(c / "rank-00001.h5", fs::file_size(c / "rank-00001.h5") / 2);
  expect_refused(c, (c / "rank-00001.h5").string());
  // inspect refuses it too
  const auto r = test::run_command({test::tramontane_binary(), "inspect", c.string()}, 60);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  const auto errors = test::error_lines(r.err);
  ASSERT_EQ(errors.size(), 1u) << r.err;
  EXPECT_NE(errors[0].find((c / "rank-00001.h5").string()), std::string::npos) << errors[0];
}

TEST_F(DamagedCheckpoint, FlippedBytes) {
  const fs::path c = copy("flipped");
  std::fstream f(c / "rank-00000.h5", std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(fs::file_size(c / "rank-00000.h5") / 2));
  char b = 0;
  f.read(&b, 1);
  b = static_cast<char>(b ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(fs::file_size(c / "rank-00000.h5") / 2));
  f.write(&b, 1);
  f.close();
  expect_refused(c, (c / "rank-00000.h5").string());
}

TEST_F(DamagedCheckpoint, MissingShard) {
  const fs::path c = copy("missing-shard");
  fs::remove(c / "rank-00001.h5");
  expect_refused(c, (c / "rank-00001.h5").string());
}

TEST_F(DamagedCheckpoint, MissingIndex) {
  const fs::path c = copy("missing-index");
  fs::remove(c / "index.h5");
  expect_refused(c, c.string());
}

TEST_F(DamagedCheckpoint, WrongFormatVersion) {
  const fs::path c = copy("version");
  {
    const hid_t f = H5Fopen((c / "index.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    const hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    const int64_t v = 99;
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Fclose(f);
  }
  expect_refused(c, (c / "index.h5").string() + ": checkpoint format version 99");
}

TEST_F(DamagedCheckpoint, ModelShapeDiffersFromTheRecipe) {
  const fs::path c = copy("shape");
  expect_refused(c, "model.d_model", {"model.d_model=32", "model.head_dim=8"});
}

TEST_F(DamagedCheckpoint, AnyTensorReadsWithH5pyAlone) {
  if (std::system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") != 0)
    GTEST_SKIP() << "python3-h5py is not installed";
  const fs::path c = copy("h5py");
  // embedding [256, 64] is split over the two ep... (tp1 dp2: replicated, written once); the
  // expert weights are split over the 2 EP ranks: both must come back whole and finite.
  const std::string script =
      "import h5py, numpy, sys\n"
      "f = h5py.File(sys.argv[1], 'r')\n"
      "w = f['param/layers.1.moe.w13'][()]\n"
      "e = f['param/embedding'][()]\n"
      "m = f['exp_avg_sq/layers.1.moe.w2'][()]\n"
      "assert w.shape == (4, 2, 96, 64) and e.shape == (256, 64), (w.shape, e.shape)\n"
      "assert numpy.isfinite(w).all() and numpy.isfinite(e).all() and numpy.isfinite(m).all()\n"
      "assert (m >= 0).all() and m.max() > 0\n"
      "print('step', int(f.attrs['step']), 'w13 norm', float(numpy.linalg.norm(w)))\n";
  std::ofstream(c / "read.py") << script;
  const auto r = test::run_command({"/usr/bin/python3", (c / "read.py").string(),
                                    (c / "index.h5").string()},
                                   60);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("step 2"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace tmt
