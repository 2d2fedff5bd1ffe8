// The watchdog through the binary (parallel/watchdog.h): a 4-rank run (tp2 ep2, dp2) with
// train.timeout_s = 5 in which one rank stops answering ends on every rank within the deadline and
// a few seconds (train.startup_timeout_s = 10 while a checkpoint is written), with one error line
// naming that rank, non-zero; `latest` is a complete checkpoint, and resuming from it gives, step
// for step, the losses of an uninterrupted run. Three ways to stop: SIGSTOP mid-step, SIGKILL of
// one rank (under a launcher that leaves the others waiting, as srun does without
// --kill-on-bad-exit) and SIGSTOP inside a checkpoint write. A rank that leaves without
// MPI_Finalize under plain mpirun is ended by mpirun itself, sooner than any deadline; a rank that
// hangs alive (its heartbeat fresh) is named as the one that has not joined.
//
// timeout: 150
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "tests/support/run.h"
#include "tests/support/temp_dir.h"

namespace tmt {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kSteps = 16, kEvery = 4;
constexpr double kTimeout = 5;

std::vector<std::string> train_argv(const std::string& dir,
                                    const std::vector<std::string>& mpi = {},
                                    const std::string& fault = "") {
  std::vector<std::string> argv = {TMT_MPIEXEC, "-n",
                                   "4",         "--oversubscribe",
                                   "--bind-to", "none",
                                   "-x",        "OMP_NUM_THREADS=1",
                                   "-x",        "OPENBLAS_NUM_THREADS=1"};
  argv.insert(argv.end(), mpi.begin(), mpi.end());
  if (!fault.empty()) argv.insert(argv.end(), {"-x", fault});
  argv.insert(argv.end(), {test::tramontane_binary(), "train"});
  for (const std::string& s : std::vector<std::string>{
           "parallel.tp=2", "parallel.pp=1", "parallel.ep=2",
           "train.steps=" + std::to_string(kSteps), "schedule.warmup_steps=1",
           "checkpoint.every=" + std::to_string(kEvery), "log.eval_every=0", "train.timeout_s=5",
           "train.startup_timeout_s=10", "run.dir=" + dir}) {
    argv.insert(argv.end(), {"--set", s});
  }
  return argv;
}

// Each step's loss in run.dir/metrics.jsonl (a resumed run's lines replace the earlier ones).
std::map<int64_t, double> losses_of(const fs::path& dir) {
  std::map<int64_t, double> losses;
  std::ifstream in(dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("step") && j.contains("loss"))
      losses[j["step"].get<int64_t>()] = j["loss"].get<double>();
  }
  return losses;
}

// A field of a rank's heartbeat, "" while there is none.
std::string heartbeat(const fs::path& dir, int rank, const std::string& key) {
  std::ifstream in(dir / "heartbeat" / ("rank-" + std::to_string(rank)));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
  }
  return "";
}

// Whether `pid` still runs (a zombie not yet reaped does not count), waiting up to 5 s for it
// to go.
bool process_exists(int pid) {
  const auto until = Clock::now() + std::chrono::seconds(5);
  while (pid > 0 && (kill(pid, 0) == 0 || errno != ESRCH)) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string id, name, state;
    if (stat >> id >> name >> state && state == "Z") return false;
    if (Clock::now() > until) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

const std::map<int64_t, double>& uninterrupted() {
  static const std::map<int64_t, double> losses = [] {
    test::TempDir dir;
    const auto r = test::run_command(train_argv(dir.path().string()), 60);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return losses_of(dir.path());
  }();
  return losses;
}

// What a faulted run left: how long the job took to end after the fault, and its output.
struct Ended {
  test::RunResult run;
  double after_fault_s = 0;
};

// Checks the error line, `latest` and a resume that continues exactly; `blame` must be in the line.
// `deadline`: the setting that ended the job, as the line names it ("train.timeout_s: 5").
void expect_ended_and_resumes(const Ended& e, const fs::path& dir, const std::string& blame,
                              int64_t newest_possible, double deadline_s = kTimeout,
                              const std::string& deadline = "train.timeout_s: 5") {
  EXPECT_FALSE(e.run.timed_out) << "the job did not end by itself\n" << e.run.err;
  EXPECT_NE(e.run.exit_code, 0) << e.run.err;
  EXPECT_LT(e.after_fault_s, deadline_s + 10) << e.run.err;
  EXPECT_GT(e.after_fault_s, deadline_s - 1) << e.run.err;
  const auto errors = test::error_lines(e.run.err);
  ASSERT_EQ(errors.size(), 1u) << e.run.err;
  EXPECT_NE(errors[0].find(blame), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("ending the job (" + deadline + ")"), std::string::npos) << errors[0];

  // latest names a complete checkpoint (renamed into place, its index written) at most as new as
  // the step the job reached.
  std::ifstream latest(dir / "checkpoints" / "latest");
  std::string name;
  ASSERT_TRUE(latest >> name);
  std::smatch m;
  ASSERT_TRUE(std::regex_match(name, m, std::regex(R"(step-(\d+))"))) << name;
  const int64_t at = std::stoll(m[1]);
  EXPECT_LE(at, newest_possible);
  EXPECT_TRUE(fs::exists(dir / "checkpoints" / name / "index.h5"));

  const auto resumed = test::run_command(train_argv(dir.string()), 60);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("resumed from " + (dir / "checkpoints" / name).string() + " at step " +
                             std::to_string(at)),
            std::string::npos)
      << resumed.out;
  const auto want = uninterrupted();
  const auto got = losses_of(dir);
  ASSERT_EQ(want.size(), static_cast<size_t>(kSteps));
  int compared = 0;
  for (const auto& [step, loss] : want) {
    if (step <= at) continue;
    ASSERT_TRUE(got.count(step)) << "step " << step;
    EXPECT_EQ(got.at(step), loss) << "step " << step;
    ++compared;
  }
  EXPECT_EQ(compared, kSteps - at);
  std::printf(
      "  every rank ended %.1f s after the fault; resumed at step %ld, %d losses equal\n"
      "    %s\n",
      e.after_fault_s, static_cast<long>(at), compared, errors[0].c_str());
}

// Starts the run; once rank `rank`'s heartbeat shows a step of at least `step`, `fault` (given its
// pid); returns when the job has ended.
Ended run_and_fault(const std::vector<std::string>& argv, const fs::path& dir, int rank,
                    int64_t step, int sig) {
  auto job = std::async(std::launch::async, [&] { return test::run_command(argv, 40); });
  int pid = 0;
  Clock::time_point fault_at{};
  const auto give_up = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < give_up &&
         job.wait_for(std::chrono::milliseconds(20)) != std::future_status::ready) {
    const std::string s = heartbeat(dir, rank, "step"), p = heartbeat(dir, rank, "pid");
    if (s.empty() || p.empty() || std::stoll(s) < step) continue;
    pid = std::stoi(p);
    kill(pid, sig);
    fault_at = Clock::now();
    break;
  }
  Ended e{job.get(), 0};
  EXPECT_GT(pid, 0) << "rank " << rank << " never reached step " << step << "\n" << e.run.err;
  e.after_fault_s = std::chrono::duration<double>(Clock::now() - fault_at).count();
  EXPECT_FALSE(process_exists(pid)) << "the faulted rank " << pid << " outlived the job";
  if (process_exists(pid)) kill(pid, SIGKILL);
  return e;
}

TEST(Watchdog, StoppedRankEndsEveryRankAndTheRunResumesExactly) {
  test::TempDir dir;
  const Ended e = run_and_fault(train_argv(dir.path().string()), dir.path(), 2, 9, SIGSTOP);
  expect_ended_and_resumes(e, dir.path(), "rank 2 (host ", 12);
}

TEST(Watchdog, KilledRankEndsEveryRankAndTheRunResumesExactly) {
  // orte_abort_on_non_zero_status 0: mpirun leaves the other ranks waiting, as srun does by
  // default; plain mpirun would end them itself, naming the rank.
  test::TempDir dir;
  const Ended e = run_and_fault(
      train_argv(dir.path().string(), {"--mca", "orte_abort_on_non_zero_status", "0"}), dir.path(),
      3, 9, SIGKILL);
  expect_ended_and_resumes(e, dir.path(), "rank 3 (host ", 12);
}

TEST(Watchdog, RankHangingAliveIsNamedAndEveryRankEnds) {
  // Rank 0 hangs mid-step 6 outside any collective (TMT_FAULT_HANG_AT_STEP), its heartbeat fresh,
  // as on a stuck device: the others name it as the rank that has not joined.
  test::TempDir dir;
  const auto start = Clock::now();
  const auto run =
      test::run_command(train_argv(dir.path().string(), {}, "TMT_FAULT_HANG_AT_STEP=6:0"), 40);
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_FALSE(run.timed_out);
  EXPECT_NE(run.exit_code, 0);
  const auto errors = test::error_lines(run.err);
  ASSERT_EQ(errors.size(), 1u) << run.err;
  EXPECT_NE(errors[0].find("rank 0 (host "), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("answers but has not joined"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("at step 6 (step, after "), std::string::npos) << errors[0];
  EXPECT_LT(took, kTimeout + 10 + 10);  // start-up and 5 steps, then the deadline
  std::ifstream latest(dir.path() / "checkpoints" / "latest");
  std::string name;
  EXPECT_TRUE(latest >> name);
  EXPECT_EQ(name, "step-0000004");
  std::printf("  the job ended %.1f s after its start (rank 0 hung in step 6)\n    %s\n", took,
              errors[0].c_str());
}

TEST(Watchdog, RankLeavingWithoutFinalizeUnderMpirunEndsTheJobAtOnce) {
  // Rank 3 leaves mid-step 9 without MPI_Finalize (TMT_FAULT_EXIT_AT_STEP). Open MPI's mpirun
  // notices by itself and ends every rank within a second or two, naming the rank and the node
  // (its own message, not an error line of ours): the deadline never comes.
  test::TempDir dir;
  const auto start = Clock::now();
  const auto run =
      test::run_command(train_argv(dir.path().string(), {}, "TMT_FAULT_EXIT_AT_STEP=9:3"), 40);
  const double took = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_FALSE(run.timed_out);
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.err.find("process rank 3"), std::string::npos) << run.err;
  EXPECT_TRUE(test::error_lines(run.err).empty()) << run.err;
  const auto steps = losses_of(dir.path());
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(steps.rbegin()->first, 8);
  EXPECT_LT(took, kTimeout + 10);
  std::ifstream latest(dir.path() / "checkpoints" / "latest");
  std::string name;
  EXPECT_TRUE(latest >> name);
  EXPECT_EQ(name, "step-0000008");
  const auto resumed = test::run_command(train_argv(dir.path().string()), 60);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const auto want = uninterrupted(), got = losses_of(dir.path());
  for (int64_t step = 9; step <= kSteps; ++step) EXPECT_EQ(got.at(step), want.at(step)) << step;
  std::printf(
      "  the job ended %.1f s after its start (rank 3 left in step 9); resumed at step 8, "
      "%d losses equal\n",
      took, kSteps - 8);
}

TEST(Watchdog, RankStoppedInACheckpointWriteLeavesTheLastCompleteOneLatest) {
  // Rank 1 stops (SIGSTOP, raised by itself: TMT_FAULT_STOP_IN_SAVE) after writing its shard of
  // step 8's checkpoint, before the index. The job's end may let the other ranks finish that
  // checkpoint (Open MPI resumes stopped ranks before killing them) — then it is complete too.
  test::TempDir dir;
  const auto run =
      test::run_command(train_argv(dir.path().string(), {}, "TMT_FAULT_STOP_IN_SAVE=8:1"), 40);
  Ended e{run, 0};
  // The fault came right after rank 1 wrote its shard: the job ends within the deadline and a few
  // seconds of that file's time.
  const fs::path ckpt = dir.path() / "checkpoints";
  fs::path shard = ckpt / "step-0000008.partial" / "rank-00001.h5";
  if (!fs::exists(shard)) shard = ckpt / "step-0000008" / "rank-00001.h5";
  ASSERT_TRUE(fs::exists(shard)) << run.err;
  e.after_fault_s =
      std::chrono::duration<double>(fs::file_time_type::clock::now() - fs::last_write_time(shard))
          .count();
  // A step's metrics line is written once its checkpoint is (it records a failed one): the last
  // line is step 7's.
  const auto steps = losses_of(dir.path());
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(steps.rbegin()->first, 7);
  EXPECT_TRUE(fs::exists(dir.path() / "checkpoints" / "step-0000004" / "index.h5"));
  // Writing a checkpoint has the start-up deadline (one rank's files may take long).
  expect_ended_and_resumes(e, dir.path(), "rank 1 (host ", 8, 10, "train.startup_timeout_s: 10");
}

}  // namespace
}  // namespace tmt
