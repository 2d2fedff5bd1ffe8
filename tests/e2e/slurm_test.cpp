// scripts/slurm/train.sbatch under a real one-node Slurm on localhost (tests/e2e/slurm_cluster.sh
// starts munged, slurmctld and slurmd in a temporary directory): the tiny recipe on 4 ranks runs to
// the end under srun --mpi=pmix, with the same losses step for step as the same job launched with
// mpirun; a second job, launched with mpirun, requeued mid-run with `scontrol requeue`, starts
// again and resumes from its checkpoint instead of step 0; a third job whose first start fails
// (exit 1, as the watchdog ends a run) is requeued by the script itself and completes on its
// second start, and a fourth with bad input (exit 2) fails without being requeued. Skipped
// (exit 77) when Slurm is not installed.
//
// timeout: 600
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/run.h"
#include "tests/support/temp_dir.h"

namespace tmt {
namespace {

class SlurmCluster {
 public:
  explicit SlurmCluster(const std::string& dir) : dir_(dir) {
    const auto r = test::run_command({script(), "start", dir_}, 60);
    status_ = r.exit_code;
    log_ = r.out + r.err;
  }
  ~SlurmCluster() { test::run_command({script(), "stop", dir_}, 60); }
  int status() const { return status_; }
  const std::string& log() const { return log_; }

  // A Slurm client command against this cluster.
  test::RunResult client(std::vector<std::string> argv, double timeout_s = 30) const {
    argv.insert(argv.begin(), {"env", "SLURM_CONF=" + dir_ + "/slurm.conf"});
    return test::run_command(argv, timeout_s);
  }
  std::string job_field(const std::string& job, const std::string& field) const {
    const auto r = client({"scontrol", "show", "job", job});
    std::smatch m;
    if (!std::regex_search(r.out, m, std::regex(field + "=(\\S+)"))) return "";
    return m[1];
  }

 private:
  static std::string script() { return test::source_path("tests/e2e/slurm_cluster.sh"); }
  std::string dir_;
  int status_ = -1;
  std::string log_;
};

size_t metric_lines(const std::string& path) {
  std::ifstream in(path);
  size_t n = 0;
  for (std::string l; std::getline(in, l);) ++n;
  return n;
}

// The "loss" of every line of a metrics.jsonl, as written (the text, so equal means bit for bit).
std::vector<std::string> losses(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  const std::regex loss(R"("loss":\s*([-+0-9.eE]+))");
  for (std::string l; std::getline(in, l);) {
    std::smatch m;
    if (std::regex_search(l, m, loss)) out.push_back(m[1]);
  }
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool wait_for(const std::function<bool()>& done, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return done();
}

TEST(Slurm, BatchScriptTrainsAndARequeuedJobResumes) {
  test::TempDir dir;
  SlurmCluster slurm(dir.file("slurm"));
  if (slurm.status() == 77) GTEST_SKIP() << "Slurm is not installed (scripts/setup.sh installs it)";
  ASSERT_EQ(slurm.status(), 0) << slurm.log();

  // launcher: srun (--mpi=pmix, the script's default) or mpirun
  const auto submit = [&](const std::string& run, int steps, const std::string& launcher,
                          const std::string& bin = test::tramontane_binary()) {
    const auto r = slurm.client(
        {"env", "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1", "OMP_NUM_THREADS=1",
         "OPENBLAS_NUM_THREADS=1", "TMT_LAUNCHER=" + launcher,
         "TMT_LAUNCHER_ARGS=" + std::string(launcher == "mpirun" ? "--oversubscribe" : ""),
         "TMT_BIN=" + bin, "sbatch", "--parsable", "-n", "4",
         "--chdir=" + dir.path().string(), "--export=ALL",
         test::source_path("scripts/slurm/train.sbatch"), test::source_path("recipes/tiny.yaml"),
         "--set", "train.steps=" + std::to_string(steps), "--set", "checkpoint.every=10", "--set",
         "log.eval_every=0", "--set", "run.dir=" + dir.file(run)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string id = r.out.substr(0, r.out.find_first_of(";\n"));
    return id;
  };
  const auto finished = [&](const std::string& job) {
    const std::string s = slurm.job_field(job, "JobState");
    return s == "COMPLETED" || s == "FAILED" || s == "CANCELLED" || s == "TIMEOUT";
  };

  // 1. A whole run, launched by srun --mpi=pmix.
  const std::string first = submit("first", 30, "srun");
  ASSERT_TRUE(wait_for([&] { return finished(first); }, 180)) << slurm.job_field(first, "JobState");
  EXPECT_EQ(slurm.job_field(first, "JobState"), "COMPLETED");
  EXPECT_EQ(metric_lines(dir.file("first/metrics.jsonl")), 30u);
  const std::string out1 = read_file(dir.file("tramontane-" + first + ".out"));
  EXPECT_NE(out1.find("4 ranks"), std::string::npos) << out1;
  EXPECT_NE(out1.find("done: 30 steps"), std::string::npos) << out1;
  // The same job under mpirun trains to the same losses, step for step (one layout, one order of
  // sums: bit for bit).
  const std::string same = submit("first_mpirun", 30, "mpirun");
  ASSERT_TRUE(wait_for([&] { return finished(same); }, 180)) << slurm.job_field(same, "JobState");
  EXPECT_EQ(slurm.job_field(same, "JobState"), "COMPLETED");
  const std::vector<std::string> srun_losses = losses(dir.file("first/metrics.jsonl"));
  EXPECT_EQ(srun_losses.size(), 30u);
  EXPECT_EQ(losses(dir.file("first_mpirun/metrics.jsonl")), srun_losses);
  std::printf("  srun --mpi=pmix and mpirun: the same %zu losses, the last %s\n",
              srun_losses.size(), srun_losses.empty() ? "-" : srun_losses.back().c_str());

  // 2. Requeued after its first checkpoints (launched by mpirun): the second start resumes.
  const std::string second = submit("second", 120, "mpirun");
  ASSERT_TRUE(wait_for([&] { return metric_lines(dir.file("second/metrics.jsonl")) >= 25; }, 180));
  const auto requeue = slurm.client({"scontrol", "requeue", second});
  ASSERT_EQ(requeue.exit_code, 0) << requeue.err;
  // Slurm holds a requeued job back for a while; let it start again at once.
  wait_for([&] { return slurm.job_field(second, "JobState") == "PENDING"; }, 60);
  slurm.client({"scontrol", "update", "JobId=" + second, "StartTime=now"});
  ASSERT_TRUE(wait_for([&] { return finished(second) && slurm.job_field(second, "Restarts") == "1"; }, 240))
      << slurm.job_field(second, "JobState");
  EXPECT_EQ(slurm.job_field(second, "JobState"), "COMPLETED");
  const std::string out2 = read_file(dir.file("tramontane-" + second + ".out"));
  EXPECT_NE(out2.find("start 2"), std::string::npos) << out2;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out2, m, std::regex(R"(resumed from \S+ at step (\d+))"))) << out2;
  EXPECT_GE(std::stoi(m[1]), 20) << "the second start did not resume from a checkpoint";
  EXPECT_EQ(metric_lines(dir.file("second/metrics.jsonl")), 120u);
  std::printf("  requeued job %s resumed at step %s and finished 120 steps\n", second.c_str(),
              m[1].str().c_str());

  // 3. A first start that fails as the watchdog ends a run (exit 1): the script requeues the job
  // and its second start trains to the end.
  const std::string flaky = dir.file("fails_first_start.sh");
  {
    std::ofstream f(flaky);
    f << "#!/bin/sh\n[ \"${SLURM_RESTART_COUNT:-0}\" -ge 1 ] || exit 1\nexec "
      << test::tramontane_binary() << " \"$@\"\n";
  }
  std::filesystem::permissions(flaky, std::filesystem::perms::owner_all);
  const std::string third = submit("third", 20, "mpirun", flaky);
  wait_for([&] { return slurm.job_field(third, "Restarts") == "1"; }, 120);
  wait_for([&] { return slurm.job_field(third, "JobState") == "PENDING"; }, 60);
  slurm.client({"scontrol", "update", "JobId=" + third, "StartTime=now"});
  ASSERT_TRUE(wait_for([&] { return finished(third) && slurm.job_field(third, "Restarts") == "1"; },
                       240))
      << slurm.job_field(third, "JobState");
  EXPECT_EQ(slurm.job_field(third, "JobState"), "COMPLETED");
  const std::string out3 = read_file(dir.file("tramontane-" + third + ".out"));
  EXPECT_NE(out3.find("requeued after exit 1 (1 of at most 3)"), std::string::npos) << out3;
  EXPECT_EQ(metric_lines(dir.file("third/metrics.jsonl")), 20u);

  // 4. Bad input (exit 2) is not requeued: it would fail the same way again.
  const std::string fourth = submit("fourth", 0, "mpirun");
  ASSERT_TRUE(wait_for([&] { return finished(fourth); }, 120)) << slurm.job_field(fourth, "JobState");
  EXPECT_EQ(slurm.job_field(fourth, "JobState"), "FAILED");
  EXPECT_EQ(slurm.job_field(fourth, "Restarts"), "0");
  const std::string out4 = read_file(dir.file("tramontane-" + fourth + ".out"));
  EXPECT_NE(out4.find("exit 2"), std::string::npos) << out4;
  EXPECT_EQ(out4.find("requeued"), std::string::npos) << out4;
  std::printf("  job %s failed its first start (exit 1), was requeued and completed; job %s "
              "(bad input, exit 2) was not requeued\n",
              third.c_str(), fourth.c_str());
}

}  // namespace
}  // namespace tmt
