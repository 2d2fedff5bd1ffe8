// The watchdog: every rank ends within a deadline when any rank stops answering.
//
// A blocked collective never returns on its own: a rank that is stopped (SIGSTOP, a stuck device,
// a lost node) or that died without MPI_Finalize under a launcher that does not end the job leaves
// every other rank waiting in its next collective. So each rank runs a thread that
//
//   * writes a heartbeat a few times per deadline: a small file per rank, <dir>/rank-N (written
//     under a temporary name, then renamed), one `key=value` line per field: job (the job's start
//     stamp, agreed at start), rank, host, pid, time (wall clock, s), step, phase, in (1 inside a
//     collective), op and group (the collective this rank is in, or was last in) and since (when
//     it entered it, or left it);
//   * checks its own main thread: when it has been inside one collective (a Communicator call,
//     marked by InCollective) longer than the deadline, it reads every rank's heartbeat, names the
//     rank that stopped answering (one that never wrote a heartbeat in this job, else one whose
//     pid is gone on this host, else the one whose heartbeat is oldest past 3 periods; when every
//     heartbeat is fresh, the rank busy outside any collective longest, else the one waiting
//     longest in another collective), prints one line
//       error: rank 2 (host x, pid 123) stopped answering 31.2 s ago, at step 7 (step, in
//       all_reduce over dp); rank 0 waited 30.1 s in all_reduce over dp at step 7; ending the
//       job (train.timeout_s: 30)
//     and ends the job: the abort hooks (NCCL's ncclCommAbort) then MPI_Abort, exit status 1
//     (called from this thread while the main thread is blocked in MPI: the standard asks for
//     MPI_THREAD_MULTIPLE for that, we ask for FUNNELED; Open MPI 4.1 ends the job all the same,
//     as tests/e2e/watchdog_test.cpp checks). Of the ranks whose deadlines pass, the first to
//     create <dir>/report (O_EXCL) prints the line and aborts; the others stay quiet and abort
//     only if they are still alive a few seconds later.
//
// The deadline is `startup_timeout_s` until the first step is done (communicators, NCCL's
// initialisation, loading a checkpoint, the first step) and in slow phases (writing a checkpoint),
// else `timeout_s`. The thread's period is a tenth of the shorter deadline, between 0.2 and 2 s.
// Heartbeat times are compared across hosts, so the hosts' clocks must agree to well under 3
// periods (NTP does).
//
// The marks are a few atomic stores: the main thread calls InCollective around every blocking
// communicator call and set_step / set_phase at the trainer's boundaries. NCCL enqueues its
// collectives and returns, so the NCCL communicator records an event after each and offers the
// oldest unfinished one as pending work (watchdog_add_probe), as PyTorch's NCCL watchdog does; on
// expiry it aborts its communicators (ncclCommAbort, an abort hook) so that no kernel keeps
// waiting on a peer, then MPI_Abort ends the processes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace tmt {

class Communicator;

struct WatchdogOptions {
  std::string dir;  // the heartbeats' directory (on a file system every rank sees)
  double timeout_s = 300;
  double startup_timeout_s = 600;
  std::string timeout_name = "timeout_s";  // how the error line names the deadline's setting
  std::string startup_timeout_name = "startup_timeout_s";
};

class Watchdog {
 public:
  // Collective over `world` (all ranks agree on the job's stamp; rank 0 clears the directory of an
  // earlier job's files first). The thread starts at once, with the start-up deadline.
  Watchdog(const WatchdogOptions& options, Communicator& world);
  ~Watchdog();  // stops the thread; the heartbeat stays, with phase "done"
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  struct State;

 private:
  std::unique_ptr<State> state_;
};

// The marks, for the main thread (a few atomic stores; read only while a watchdog runs).
void watchdog_set_step(int64_t step);  // the step being computed (1-based)
// What the main thread does between collectives: a string with static storage ("step",
// "checkpoint save", ...). A slow phase (writing or loading a checkpoint: one rank's files may
// take long while the others wait) has the start-up deadline.
void watchdog_set_phase(const char* phase, bool slow = false);
// The first step is done: the running deadline replaces the start-up one.
void watchdog_running();

// Inside a blocking communicator call: `op` and `group` have static storage. Nested marks (the
// NCCL communicator's MPI twin) keep the outermost.
class InCollective {
 public:
  InCollective(const char* op, const char* group);
  ~InCollective();
  InCollective(const InCollective&) = delete;
  InCollective& operator=(const InCollective&) = delete;
};

// Work queued on a device that may never finish (NCCL's collectives): a probe returns the oldest
// unfinished piece, if any; the watchdog polls it each period, on its own thread, and treats it
// like a collective the main thread is in. Returns a handle for unregistering.
struct PendingWork {
  const char* op = nullptr;     // static storage
  const char* group = nullptr;  // static storage
  double since = 0;             // wall clock (s) when it was queued
};
int watchdog_add_probe(std::function<std::optional<PendingWork>()> oldest);
void watchdog_remove_probe(int handle);

// What the watchdog runs before MPI_Abort (NCCL communicators register ncclCommAbort): returns a
// handle for unregistering. Hooks run on the watchdog's thread while the main thread is blocked.
int watchdog_add_abort_hook(std::function<void()> hook);
void watchdog_remove_abort_hook(int handle);

}  // namespace tmt
