#include "parallel/watchdog.h"

#include <fcntl.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "kernels/base/check.h"
#include "parallel/comm.h"

namespace tmt {
namespace {
namespace fs = std::filesystem;

double wall_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// What the main thread is doing, written by the marks and read by the watchdog's thread. The
// strings have static storage, so a pointer read at any moment is a valid string.
struct Marks {
  std::atomic<int64_t> step{0};
  std::atomic<const char*> phase{"start-up"};
  std::atomic<const char*> op{nullptr};  // in a collective when depth > 0, else the last one
  std::atomic<const char*> group{nullptr};
  std::atomic<double> since{0};  // wall clock when the current (or last) collective began
  std::atomic<int> depth{0};
  std::atomic<bool> running{false};  // the first step is done
  std::atomic<bool> slow{false};     // the phase is one that takes the start-up deadline
};
Marks g_marks;

std::mutex g_hooks_mutex;  // the abort hooks and the probes
std::map<int, std::function<void()>> g_abort_hooks;
std::map<int, std::function<std::optional<PendingWork>()>> g_probes;
int g_next_hook = 0;

// The oldest device work still pending, over every probe.
std::optional<PendingWork> oldest_pending() {
  std::lock_guard lock(g_hooks_mutex);
  std::optional<PendingWork> oldest;
  for (auto& [handle, probe] : g_probes) {
    const std::optional<PendingWork> w = probe();
    if (w && (!oldest || w->since < oldest->since)) oldest = w;
  }
  return oldest;
}

std::string field_or(const std::map<std::string, std::string>& f, const std::string& key,
                     const std::string& fallback) {
  const auto it = f.find(key);
  return it == f.end() ? fallback : it->second;
}

// One rank's heartbeat as read back; `found` false when there is none (or of another job).
struct Beat {
  bool found = false;
  std::map<std::string, std::string> f;
  double time = 0;
  double since = 0;
  int pid = 0;
  bool in_collective = false;
  std::string where() const {  // "step, in all_reduce over dp" or "step, after ..."
    const std::string phase = field_or(f, "phase", "?"), op = field_or(f, "op", "");
    if (op.empty()) return phase;
    return fmt::format("{}, {} {} over {}", phase, in_collective ? "in" : "after", op,
                       field_or(f, "group", "?"));
  }
};

}  // namespace

struct Watchdog::State {
  WatchdogOptions options;
  int rank = 0, world = 1;
  double job = 0;  // rank 0's start time: this job's stamp
  double period = 1;
  std::string host;
  std::mutex mutex;
  std::condition_variable wake;
  bool stop = false;
  std::thread thread;

  fs::path beat_path(int r) const { return fs::path(options.dir) / fmt::format("rank-{}", r); }

  void write_beat(const char* phase_override = nullptr) {
    const int depth = g_marks.depth.load();
    const char* op = g_marks.op.load();
    const char* group = g_marks.group.load();
    std::string text = fmt::format(
        "job={:.6f}\nrank={}\nhost={}\npid={}\ntime={:.3f}\nstep={}\nphase={}\nin={}\nop={}\n"
        "group={}\nsince={:.3f}\n",
        job, rank, host, static_cast<int>(getpid()), wall_now(), g_marks.step.load(),
        phase_override != nullptr ? phase_override : g_marks.phase.load(), depth > 0 ? 1 : 0,
        op != nullptr ? op : "", group != nullptr ? group : "", g_marks.since.load());
    const fs::path path = beat_path(rank), tmp = path.string() + ".tmp";
    // A failed write (a full or absent file system) only makes this rank look stale to others.
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    if (ok) std::rename(tmp.c_str(), path.c_str());
  }

  Beat read_beat(int r) const {
    Beat b;
    std::ifstream in(beat_path(r));
    for (std::string line; std::getline(in, line);) {
      const size_t eq = line.find('=');
      if (eq != std::string::npos) b.f[line.substr(0, eq)] = line.substr(eq + 1);
    }
    try {
      if (std::abs(std::stod(field_or(b.f, "job", "0")) - job) > 1e-3) return b;  // an old job's
      b.time = std::stod(field_or(b.f, "time", "0"));
      b.since = std::stod(field_or(b.f, "since", "0"));
      b.pid = std::stoi(field_or(b.f, "pid", "0"));
      b.in_collective = field_or(b.f, "in", "0") == "1";
    } catch (const std::exception&) {
      return Beat{};
    }
    b.found = true;
    return b;
  }

  // The deadline in force and its setting's name.
  std::pair<double, const std::string*> deadline() const {
    if (g_marks.running.load() && !g_marks.slow.load())
      return {options.timeout_s, &options.timeout_name};
    return {options.startup_timeout_s, &options.startup_timeout_name};
  }

  void loop() {
    std::unique_lock lock(mutex);
    while (!stop) {
      write_beat();
      const auto [limit, name] = deadline();
      const double now = wall_now();
      if (g_marks.depth.load() > 0 && now - g_marks.since.load() > limit) {
        expire(limit, *name,
               PendingWork{g_marks.op.load(), g_marks.group.load(), g_marks.since.load()});
      }
      if (const auto w = oldest_pending(); w && now - w->since > limit) expire(limit, *name, *w);
      wake.wait_for(lock, std::chrono::duration<double>(period));
    }
  }

  // Who stopped answering, in one sentence ("rank 2 (host x, pid 7) stopped answering 31 s ago,
  // at step 7 (step, in all_reduce over dp)"), read from the heartbeats.
  std::string culprit(double now, const PendingWork& waited) const {
    const double stale = 3 * period + 1;
    int worst = -1;
    double worst_age = -1;
    std::string worst_what;
    for (int r = 0; r < world; ++r) {
      if (r == rank) continue;
      const Beat b = read_beat(r);
      if (!b.found) {
        // Never answered in this job: the worst of all.
        if (worst_age < 1e30) {
          worst = r, worst_age = 1e30;
          worst_what = fmt::format("rank {} never wrote a heartbeat in this job", r);
        }
        continue;
      }
      const double age = now - b.time;
      const bool here = field_or(b.f, "host", "") == host;
      const bool gone = here && b.pid > 0 && ::kill(b.pid, 0) != 0 && errno == ESRCH;
      if (!gone && age <= stale) continue;
      const double weight = gone ? 1e20 + age : age;  // a dead process first, then the oldest
      if (weight <= worst_age) continue;
      worst = r, worst_age = weight;
      worst_what = fmt::format("rank {} (host {}, pid {}) {} {:.1f} s ago, at step {} ({})", r,
                               field_or(b.f, "host", "?"), b.pid,
                               gone ? "exited; its last heartbeat was" : "stopped answering", age,
                               field_or(b.f, "step", "?"), b.where());
    }
    if (worst >= 0) return worst_what;
    // Every heartbeat is fresh: a rank busy outside any collective (a stuck device, work slower
    // than the deadline) for longest, else the rank waiting longest in another collective (a
    // deadlock).
    const char* my_op = waited.op;
    const char* my_group = waited.group;
    std::pair<bool, double> best{true, now};  // (in a collective, since): the smaller, the worse
    for (int r = 0; r < world; ++r) {
      if (r == rank) continue;
      const Beat b = read_beat(r);
      const bool same = b.in_collective && field_or(b.f, "op", "") == (my_op ? my_op : "") &&
                        field_or(b.f, "group", "") == (my_group ? my_group : "");
      const std::pair<bool, double> key{b.in_collective, b.since};
      if (same || !(key < best)) continue;
      best = key;
      worst = r;
      worst_what = fmt::format(
          "rank {} (host {}, pid {}) answers but has not joined for {:.1f} s: it is at "
          "step {} ({})",
          r, field_or(b.f, "host", "?"), b.pid, now - b.since, field_or(b.f, "step", "?"),
          b.where());
    }
    if (worst >= 0) return worst_what;
    return "every rank answers and waits in the same collective";
  }

  // `waited`: the collective this rank has waited in past the deadline.
  [[noreturn]] void expire(double limit, const std::string& name, const PendingWork& waited) {
    const double now = wall_now();
    std::string line = fmt::format(
        "error: {}; rank {} waited {:.1f} s in {} over {} at step {}; ending the job ({}: {:g})\n",
        culprit(now, waited), rank, now - waited.since, waited.op != nullptr ? waited.op : "?",
        waited.group != nullptr ? waited.group : "?", g_marks.step.load(), name, limit);
    // The first rank whose deadline passes reports; the others end quietly.
    const fs::path report = fs::path(options.dir) / "report";
    const int fd = ::open(report.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
    const bool reporter = fd >= 0 || errno != EEXIST;
    if (reporter) {
      if (fd >= 0) {
        [[maybe_unused]] const ssize_t n = ::write(fd, line.data(), line.size());
        ::close(fd);
      }
      std::fputs(line.c_str(), stderr);
      std::fflush(stderr);
    }
    write_beat("ended by the watchdog");
    // The reporter's MPI_Abort ends every rank; the others abort only if it has not within a few
    // seconds (Open MPI garbles its messages when many ranks abort at once).
    if (!reporter) std::this_thread::sleep_for(std::chrono::duration<double>(5 + 2 * period));
    std::vector<std::function<void()>> hooks;
    {
      std::lock_guard hooks_lock(g_hooks_mutex);
      for (auto& [handle, hook] : g_abort_hooks) hooks.push_back(hook);
    }
    for (auto& hook : hooks) hook();
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);
  }
};

Watchdog::Watchdog(const WatchdogOptions& options, Communicator& world)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.options = options;
  s.rank = world.rank();
  s.world = world.size();
  s.host = host_name();
  s.period = std::clamp(std::min(options.timeout_s, options.startup_timeout_s) / 10, 0.2, 2.0);
  double job = s.rank == 0 ? wall_now() : 0;
  std::error_code ec;
  if (s.rank == 0) {
    fs::create_directories(options.dir, ec);
    fs::remove(fs::path(options.dir) / "report", ec);
    for (const auto& e : fs::directory_iterator(options.dir, ec)) fs::remove(e.path(), ec);
  }
  world.broadcast(Tensor{&job, DType::kF64, Device::kCpu, Shape{1}}, 0);
  s.job = job;
  g_marks.step = 0;
  g_marks.phase = "start-up";
  g_marks.running = false;
  g_marks.slow = false;
  s.write_beat();
  s.thread = std::thread([&s] { s.loop(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard lock(state_->mutex);
    state_->stop = true;
  }
  state_->wake.notify_all();
  state_->thread.join();
  state_->write_beat("done");
}

void watchdog_set_step(int64_t step) { g_marks.step = step; }
void watchdog_set_phase(const char* phase, bool slow) {
  g_marks.phase = phase;
  g_marks.slow = slow;
}
void watchdog_running() { g_marks.running = true; }

// Only the main thread marks. The watchdog's thread reads depth, then since: so since is set before
// depth rises and refreshed before it falls, and a deadline never counts from an older time.
InCollective::InCollective(const char* op, const char* group) {
  if (g_marks.depth.load() == 0) {
    g_marks.op = op;
    g_marks.group = group;
    g_marks.since = wall_now();
  }
  g_marks.depth.fetch_add(1);
}

InCollective::~InCollective() {
  if (g_marks.depth.load() == 1) g_marks.since = wall_now();
  g_marks.depth.fetch_sub(1);
}

int watchdog_add_abort_hook(std::function<void()> hook) {
  std::lock_guard lock(g_hooks_mutex);
  g_abort_hooks[g_next_hook] = std::move(hook);
  return g_next_hook++;
}

void watchdog_remove_abort_hook(int handle) {
  std::lock_guard lock(g_hooks_mutex);
  g_abort_hooks.erase(handle);
}

int watchdog_add_probe(std::function<std::optional<PendingWork>()> oldest) {
  std::lock_guard lock(g_hooks_mutex);
  g_probes[g_next_hook] = std::move(oldest);
  return g_next_hook++;
}

void watchdog_remove_probe(int handle) {
  std::lock_guard lock(g_hooks_mutex);
  g_probes.erase(handle);
}

}  // namespace tmt
