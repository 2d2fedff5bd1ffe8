#include "kernels/base/profiler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <string_view>
#include <unordered_map>

#include "kernels/base/check.h"
#if TMT_WITH_CUDA
#include "kernels/cuda/profiler.h"
#include "kernels/cuda/runtime.h"
#endif

namespace tmt {

double OpProfile::floor_seconds(const ProfilerPeaks& peaks) const {
  return std::max(flops / peaks.flops_per_s, bytes / peaks.bytes_per_s);
}

Profiler::Profiler(ProfilerPeaks peaks, bool enabled) : peaks_(peaks), enabled_(enabled) {
  TMT_CHECK(peaks.flops_per_s > 0 && peaks.bytes_per_s > 0,
            "Profiler: peaks {} FLOP/s, {} B/s must be > 0", peaks.flops_per_s, peaks.bytes_per_s);
}

Profiler::~Profiler() {
#if TMT_WITH_CUDA
  for (void* e : events_) cuda::event_destroy(e);
#endif
}

void Profiler::reserve(size_t ops, Device device) {
  records_.reserve(ops);
  if (device == Device::kCuda) grow_events(ops);
}

void Profiler::grow_events(size_t ops) {
#if TMT_WITH_CUDA
  while (events_.size() < 2 * ops) events_.push_back(cuda::event_create());
#else
  TMT_CHECK(ops == 0, "Profiler: CUDA events in a build without the CUDA backend");
#endif
}

int64_t Profiler::begin(const Context& ctx, const char* name, const OpCost& cost) {
  if (depth_++ > 0) return kNested;
  const size_t id = records_.size();
  records_.push_back({name, cost, ctx.device, ctx.stream, {}, 0.0, false});
  Record& r = records_.back();
  if (ctx.device == Device::kCuda) {
    // Growing the pool (doubling) happens here, before the start event: outside the timed call.
    if (events_.size() < 2 * (id + 1)) grow_events(std::max<size_t>(2 * id, 256));
#if TMT_WITH_CUDA
    cuda::event_record(events_[2 * id], ctx.stream);
#endif
    r.pending = true;
  } else {
    r.start = Clock::now();
  }
  return static_cast<int64_t>(id);
}

void Profiler::end(int64_t id) {
  --depth_;
  if (id == kNested) return;
  Record& r = records_[static_cast<size_t>(id)];
  if (r.device == Device::kCuda) {
#if TMT_WITH_CUDA
    cuda::event_record(events_[2 * static_cast<size_t>(id) + 1], r.stream);
#endif
  } else {
    r.seconds = std::chrono::duration<double>(Clock::now() - r.start).count();
  }
}

void Profiler::read_events() {
#if TMT_WITH_CUDA  // without it no record is pending (begin() refuses a CUDA context)
  bool synced = false;
  for (size_t i = 0; i < records_.size(); ++i) {
    Record& r = records_[i];
    if (!r.pending) continue;
    if (!synced) cuda::synchronize_device();
    synced = true;
    r.seconds = 1e-3 * cuda::event_elapsed_ms(events_[2 * i], events_[2 * i + 1]);
    r.pending = false;
  }
#endif
}

std::vector<OpProfile> Profiler::summary() {
  read_events();
  std::vector<OpProfile> ops;
  std::unordered_map<std::string_view, size_t> index;
  for (const Record& r : records_) {
    const auto [it, added] = index.try_emplace(r.name, ops.size());
    if (added) ops.push_back({r.name});
    OpProfile& op = ops[it->second];
    op.calls += 1;
    op.seconds += r.seconds;
    op.flops += r.cost.flops;
    op.bytes += r.cost.bytes;
  }
  std::stable_sort(ops.begin(), ops.end(),
                   [](const OpProfile& a, const OpProfile& b) { return a.seconds > b.seconds; });
  return ops;
}

double Profiler::total_seconds() {
  read_events();
  double s = 0;
  for (const Record& r : records_) s += r.seconds;
  return s;
}

namespace {

// One table row, per step: `calls` < 0 for the rows that are not ops (no rates, no floor).
std::string row(std::string_view name, double calls, double s, double share, double flops,
                double bytes, double floor_s) {
  const bool op = calls >= 0;
  const auto rate = [&](double amount, double unit, int digits) {
    if (!op) return std::string();
    return s > 0 && amount > 0 ? fmt::format("{:.{}f}", amount / s / unit, digits) : "-";
  };
  return fmt::format(
      "| {:<26} | {:>7} | {:>10.3f} | {:>6.1f}% | {:>9} | {:>9} | {:>10} | {:>8} |\n", name,
      op ? fmt::format("{:.0f}", calls) : "", 1e3 * s, 100 * share, rate(flops, 1e12, 4),
      rate(bytes, 1e9, 2), op ? fmt::format("{:.4f}", 1e3 * floor_s) : "",
      op && s > 0 ? fmt::format("{:.1f}%", 100 * floor_s / s) : "");
}

}  // namespace

std::string Profiler::table(int64_t steps, double wall_seconds) {
  TMT_CHECK(steps >= 1, "Profiler::table: {} steps", steps);
  const std::vector<OpProfile> ops = summary();
  const double n = static_cast<double>(steps);
  double total = 0, flops = 0, bytes = 0, floor = 0, calls = 0;
  for (const OpProfile& op : ops) {
    total += op.seconds;
    flops += op.flops;
    bytes += op.bytes;
    floor += op.floor_seconds(peaks_);
    calls += static_cast<double>(op.calls);
  }
  const double of = wall_seconds > 0 ? wall_seconds : total;
  const double share = of > 0 ? 1 / of : 0;
  std::string t = fmt::format(
      "| {:<26} | {:>7} | {:>10} | {:>7} | {:>9} | {:>9} | {:>10} | {:>8} |\n", "op", "calls",
      "total ms", wall_seconds > 0 ? "% step" : "% ops", "TFLOP/s", "GB/s", "floor ms", "% floor");
  t += fmt::format("|{:-<28}|{:->9}|{:->12}|{:->9}|{:->11}|{:->11}|{:->12}|{:->10}|\n", "", ":",
                   ":", ":", ":", ":", ":", ":");
  for (const OpProfile& op : ops) {
    t += row(op.name, static_cast<double>(op.calls) / n, op.seconds / n, op.seconds * share,
             op.flops / n, op.bytes / n, op.floor_seconds(peaks_) / n);
  }
  t += row("all ops", calls / n, total / n, total * share, flops / n, bytes / n, floor / n);
  if (wall_seconds > 0) {
    t +=
        row("outside ops", -1, (wall_seconds - total) / n, (wall_seconds - total) * share, 0, 0, 0);
    t += row("step (wall)", -1, wall_seconds / n, 1, 0, 0, 0);
  }
  return t;
}

void Profiler::reset() {
  TMT_CHECK(depth_ == 0, "Profiler::reset inside an op");
  read_events();  // the device must be done with the events before they are reused
  records_.clear();
}

}  // namespace tmt
