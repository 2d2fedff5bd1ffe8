// Profiler: per-op times and costs, aggregated by op name, for the training-step benchmark
// (tests/tools/bench_train.cpp).
//
// Every op's dispatch function (kernels/<op>.cpp) opens, after its argument checks,
//   const ProfileScope scope(ctx, "linear_fwd", {flops, bytes});
// where the cost is the op's arithmetic and the fewest bytes it must move (each input read once,
// each output written once, an accumulated output read and written). When ctx.profiler is null —
// always, except in the benchmark — the scope costs one branch, plus the cost's few
// multiplications of sizes (arguments, so computed before it). With a profiler, each call is
// timed:
//   CPU:  a steady clock read before and after the call;
//   CUDA: a pair of events recorded on ctx.stream around it, from a pool created outside the timed
//         region (reserve(), or grown before the start event) and read back only at report time,
//         after a device synchronize — so the host never waits on the device because of it.
// Only the outermost op is recorded: an op that calls others (grouped_linear's per-expert
// linear calls) is one call, and its cost is its own.
//
// How the profiler reaches the ops: struct Context (context.h) carries a `Profiler*` that every
// copy shares, so a Trainer built with one (trainer.h) hands it to every layer and the optimizer
// at construction; set_enabled() then switches the recording on for the steps to be profiled and
// off again (a disabled profiler costs the ops one more load and branch).
//
// The table (table()): per op, calls and total ms per step, its share of the profiled time, the
// achieved TFLOP/s and GB/s, the floor — max(FLOPs / peak FLOP/s, bytes / peak bandwidth) from
// the summed costs — and the floor as a share of the measured time. Given the step's wall time it
// also shows the time outside ops (host work, communication, the device waiting for the host).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/base/context.h"

namespace tmt {

struct OpCost {
  double flops = 0, bytes = 0;
};

// The machine's ceilings the floors are computed against.
struct ProfilerPeaks {
  double flops_per_s = 989e12;   // H100 SXM, bf16 dense tensor cores
  double bytes_per_s = 3.35e12;  // H100 SXM, HBM3
};

// One op name's calls, summed.
struct OpProfile {
  std::string name;
  int64_t calls = 0;
  double seconds = 0, flops = 0, bytes = 0;
  double floor_seconds(const ProfilerPeaks& peaks) const;
};

class Profiler {
 public:
  explicit Profiler(ProfilerPeaks peaks, bool enabled = true);
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  bool enabled() const { return enabled_; }
  void set_enabled(bool enabled) { enabled_ = enabled; }
  const ProfilerPeaks& peaks() const { return peaks_; }

  // Room for `ops` calls without growing: on CUDA, their events are created now.
  void reserve(size_t ops, Device device);

  // ProfileScope's two halves. `name` must outlive the profiler (the ops pass literals). begin
  // returns the call's id, or kNested inside another op's scope (not recorded).
  static constexpr int64_t kNested = -1;
  int64_t begin(const Context& ctx, const char* name, const OpCost& cost);
  void end(int64_t id);

  // Calls recorded since the last reset().
  size_t calls() const { return records_.size(); }
  // Aggregated by name, the largest total time first; on CUDA this synchronizes the device and
  // reads the events.
  std::vector<OpProfile> summary();
  // Σ of every recorded call's time.
  double total_seconds();
  // The table (markdown), every figure divided by `steps` (the steps the calls were recorded
  // over). With wall_seconds > 0 (those steps' wall time) the shares are of it and two more rows
  // give the time outside ops and the whole step; otherwise shares are of the ops' total.
  std::string table(int64_t steps = 1, double wall_seconds = 0);
  // Forgets the recorded calls; keeps the event pool.
  void reset();

 private:
  using Clock = std::chrono::steady_clock;
  struct Record {
    const char* name;
    OpCost cost;
    Device device;
    void* stream;             // CUDA: where its events were recorded
    Clock::time_point start;  // CPU
    double seconds;           // CPU: at end(); CUDA: read at summary()
    bool pending;             // CUDA: events not read yet
  };
  void grow_events(size_t ops);
  void read_events();

  ProfilerPeaks peaks_;
  bool enabled_;
  int depth_ = 0;
  std::vector<Record> records_;
  std::vector<void*> events_;  // CUDA: cudaEvent_t, two per record (start, end)
};

// The bytes of the tensors, 0 for an absent one (Tensor{}): for op costs.
inline double bytes_of(const Tensor& t) {
  return t.defined() ? static_cast<double>(t.nbytes()) : 0.0;
}
template <class... Tensors>
double bytes_of(const Tensor& t, const Tensors&... rest) {
  return bytes_of(t) + bytes_of(rest...);
}

// Times the enclosing op when ctx carries an enabled profiler.
class ProfileScope {
 public:
  ProfileScope(const Context& ctx, const char* name, const OpCost& cost) {
    if (ctx.profiler != nullptr && ctx.profiler->enabled()) [[unlikely]] {
      profiler_ = ctx.profiler;
      id_ = profiler_->begin(ctx, name, cost);
    }
  }
  ~ProfileScope() {
    if (profiler_ != nullptr) [[unlikely]] {
      profiler_->end(id_);
    }
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  Profiler* profiler_ = nullptr;
  int64_t id_ = Profiler::kNested;
};

}  // namespace tmt
