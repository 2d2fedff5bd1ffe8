// bench_train: the training-step benchmark. Builds the Trainer for a recipe (default
// recipes/bench-1gpu.yaml: one H100, bf16), trains `--warmup` steps untimed and `--steps` timed
// ones (the device synchronized around each), and prints
//   device: ...            the GPU (or cpu) and the recipe's shape
//   a summary table         tokens/step, median and mean step time, tokens/s, model TFLOP/s, MFU,
//                           peak memory, the loss before and after
//   a per-op table          one more step with a Profiler (kernels/base/profiler.h) in the
//                           Trainer's context: each op's time, rate, floor and % of the floor, and
//                           the time outside ops (host work, communication, device idle)
// Model FLOPs are trainer/model/model_stats.h's training FLOPs per token (6 × active matmul parameters
// + attention) times the tokens; MFU = model FLOP/s / (ranks × peak). Peaks: --peak-tflops and
// --hbm-gbps, by default the H100 SXM's datasheet figures on cuda (989 TFLOP/s bf16 dense, 3.35
// TB/s HBM3) and kCpuPeak* below on the CPU. Ranks: as launched (mpirun -n N); rank 0 prints.
//
//   build/tests/bench_train [RECIPE] [--set key=value]... [--steps N] [--warmup N]
//                           [--peak-tflops X] [--hbm-gbps X]
//
// Exit status: 0 done; 77 when train.device is cuda and no GPU is usable (skipped); 2 bad flags or
// recipe (one `error:` line).
#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kernels/base/check.h"
#include "kernels/base/device.h"
#include "kernels/base/profiler.h"
#include "kernels/cpu/threads.h"
#include "parallel/mpi_env.h"
#include "parallel/open_world.h"
#include "trainer/model/model_stats.h"
#include "trainer/trainer.h"
#if TMT_WITH_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace tmt {
namespace {

constexpr const char* kDefaultRecipe = "recipes/bench-1gpu.yaml";
constexpr double kH100PeakTflops = 989;  // H100 SXM, bf16 dense, tensor cores
constexpr double kH100Gbps = 3350;       // H100 SXM, HBM3
// CPU defaults: the 2-core AMD EPYC VM of docs/PERFORMANCE.md, its fp32 peak (2 cores × 2.6 GHz ×
// 32 FLOP/cycle) and its memory bandwidth as a 256 MiB memcpy measured it (bytes read + written);
// pass the flags for another machine.
constexpr double kCpuPeakTflops = 0.166;
constexpr double kCpuGbps = 20;

constexpr const char* kUsage =
    "usage: bench_train [RECIPE] [--set key=value]... [--steps N] [--warmup N] "
    "[--peak-tflops X] [--hbm-gbps X]\n"
    "  RECIPE          default recipes/bench-1gpu.yaml (relative paths also resolve against the\n"
    "                  source tree)\n"
    "  --set k=v       override a recipe key (repeatable), e.g. --set parallel.tp=1\n"
    "  --steps N       timed steps (default 10)\n"
    "  --warmup N      untimed steps first (default 3)\n"
    "  --peak-tflops X peak FLOP/s per rank for MFU and the floors (cuda default 989, cpu 0.166)\n"
    "  --hbm-gbps X    peak memory bandwidth per rank in GB/s (cuda default 3350, cpu 20)\n";

struct Options {
  std::string recipe = kDefaultRecipe;
  std::vector<std::string> overrides;
  int64_t steps = 10, warmup = 3;
  std::optional<double> peak_tflops, hbm_gbps;
  bool help = false;
};

template <class T>
T parse_number(const std::string& flag, const std::string& text) {
  T value{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) {
    input_error("{} {}: expected {}", flag, text,
                std::is_integral_v<T> ? "an integer" : "a number");
  }
  return value;
}

Options parse_args(int argc, char** argv) {
  Options o;
  bool have_recipe = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      o.help = true;
      continue;
    }
    if (arg.empty() || arg[0] != '-') {
      if (arg.empty()) input_error("an empty RECIPE path");
      if (have_recipe) input_error("a second recipe '{}' (one RECIPE at most; see --help)", arg);
      o.recipe = arg;
      have_recipe = true;
      continue;
    }
    std::string value;
    if (const size_t eq = arg.find('='); eq != std::string::npos && arg != "--set") {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (arg == "--set" || arg == "--steps" || arg == "--warmup" || arg == "--peak-tflops" ||
               arg == "--hbm-gbps") {
      if (i + 1 >= argc) input_error("{} needs a value", arg);
      value = argv[++i];
    }
    if (arg == "--set") {
      if (value.find('=') == std::string::npos) input_error("--set {}: expected key=value", value);
      o.overrides.push_back(value);
    } else if (arg == "--steps") {
      o.steps = parse_number<int64_t>(arg, value);
      if (o.steps < 1) input_error("--steps {}: must be at least 1", value);
    } else if (arg == "--warmup") {
      o.warmup = parse_number<int64_t>(arg, value);
      if (o.warmup < 0) input_error("--warmup {}: must be at least 0", value);
    } else if (arg == "--peak-tflops" || arg == "--hbm-gbps") {
      const double x = parse_number<double>(arg, value);
      if (!(x > 0) || !std::isfinite(x)) input_error("{} {}: must be > 0", arg, value);
      (arg == "--peak-tflops" ? o.peak_tflops : o.hbm_gbps) = x;
    } else {
      input_error("unknown flag '{}' (see --help)", arg);
    }
  }
  return o;
}

// A relative recipe path that is not there from here is looked up in the source tree.
std::string find_recipe(const std::string& path) {
  namespace fs = std::filesystem;
  if (fs::path(path).is_absolute() || fs::exists(path)) return path;
  const fs::path in_source = fs::path(TMT_SOURCE_DIR) / path;
  return fs::exists(in_source) ? in_source.string() : path;
}

std::string shape_line(const Recipe& r, const std::string& recipe, const ModelStats& s) {
  const ModelConfig& m = r.model;
  const ParallelConfig& p = r.parallel;
  std::string moe;
  if (m.moe) {
    moe = fmt::format(", {} experts top-{} (FFN {})", m.moe->n_experts, m.moe->top_k,
                      m.moe->expert_ffn_hidden);
  }
  return fmt::format(
      "recipe: {}: {} layers ({} dense, {} MoE), d_model {}, {} heads / {} kv heads of {}{}, "
      "vocab {}; {} parameters ({} active per token); {} sequences x {} tokens a step "
      "(micro-batch {}); train.dtype {}, train.device {}; {} rank(s): tp {} pp {} dp {} ep {}",
      recipe, m.n_layers, s.dense_layers, s.moe_layers, m.d_model, m.n_heads, m.n_kv_heads,
      m.head_dim, moe, m.vocab_size, human_count(static_cast<double>(s.total_params)),
      human_count(static_cast<double>(s.active_params)), r.train.global_batch, r.data.seq_len,
      r.train.micro_batch, name_of(r.train.dtype), name_of(r.train.device), process_world(), p.tp,
      p.pp, p.dp, p.ep);
}

std::string device_line(bool cuda) {
#if TMT_WITH_CUDA
  if (cuda) {
    std::string why;
    return "device: " + cuda::device_description(local_rank() % cuda::device_count(&why));
  }
#else
  (void)cuda;
#endif
  return fmt::format("device: cpu ({} hardware threads)", std::thread::hardware_concurrency());
}

std::string human_bytes(double bytes) {
  return bytes >= double(1 << 30) ? fmt::format("{:.2f} GiB", bytes / double(1 << 30))
                                  : fmt::format("{:.1f} MiB", bytes / double(1 << 20));
}

// The arenas' bytes: parameters and gradients, AdamW's state, activations (this rank's).
struct ArenaBytes {
  double params = 0, optimizer = 0, activations = 0;
  double total() const { return params + optimizer + activations; }
};

ArenaBytes arena_bytes(Trainer& trainer) {
  ArenaBytes b;
  for (const ParamGroup& g : trainer.model().params().groups())
    b.params += bytes_of(g.values, g.grads);
  for (const Optimizer::GroupState& g : trainer.optimizer().groups())
    b.optimizer += bytes_of(g.m, g.v);
  const GradSync& grads = trainer.grad_sync();
  for (size_t i = 0; grads.zero1() && i < grads.size(); ++i)
    b.optimizer += bytes_of(grads.summed(i));
  b.activations = static_cast<double>(trainer.model().activation_bytes());
  return b;
}

std::string memory_line(Trainer& trainer, bool cuda) {
  const ArenaBytes a = arena_bytes(trainer);
  const std::string arenas = fmt::format(
      "arenas {} (parameters+gradients {}, optimizer {}, activations {})", human_bytes(a.total()),
      human_bytes(a.params), human_bytes(a.optimizer), human_bytes(a.activations));
#if TMT_WITH_CUDA
  if (cuda) {
    return fmt::format("{} in use on the device at the end (cudaMemGetInfo); {}; ops' workspace {}",
                       human_bytes(static_cast<double>(cuda::device_memory_used())), arenas,
                       human_bytes(static_cast<double>(trainer.workspace().capacity())));
  }
#else
  (void)cuda;
#endif
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return fmt::format("{}; process peak RSS {}", arenas,
                     human_bytes(1024.0 * static_cast<double>(usage.ru_maxrss)));
}

void print_summary(const Recipe& r, const std::vector<double>& times, int64_t warmup, double tokens,
                   double flops_per_token, double peak_flops, const std::string& memory,
                   double first_loss, double last_loss) {
  std::vector<double> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  const double median = 0.5 * (sorted[(n - 1) / 2] + sorted[n / 2]);
  const double mean = std::accumulate(times.begin(), times.end(), 0.0) / static_cast<double>(n);
  const double tokens_per_s = tokens / mean;
  const double model_flops = tokens_per_s * flops_per_token;
  const double peak = peak_flops * process_world();
  fmt::print("\n| metric | value |\n|---|---|\n");
  fmt::print("| tokens/step | {:.0f} ({} sequences x {}) |\n", tokens, r.train.global_batch,
             r.data.seq_len);
  fmt::print("| step time median | {:.1f} ms ({} timed steps after {} warm-up) |\n", 1e3 * median,
             n, warmup);
  fmt::print("| step time mean | {:.1f} ms (min {:.1f}, max {:.1f}) |\n", 1e3 * mean,
             1e3 * sorted.front(), 1e3 * sorted.back());
  fmt::print("| tokens/s | {:.0f} (tokens/step / mean step time) |\n", tokens_per_s);
  fmt::print("| model TFLOP/s | {:.4g} ({} training FLOPs a token) |\n", model_flops / 1e12,
             human_count(flops_per_token));
  fmt::print("| MFU | {:.2f}% of {} rank(s) x {:.3g} TFLOP/s |\n", 100 * model_flops / peak,
             process_world(), peak_flops / 1e12);
  fmt::print("| peak memory | {} |\n", memory);
  fmt::print("| loss | {:.4f} at the first timed step, {:.4f} at the last |\n", first_loss,
             last_loss);
}

int run(const Options& o) {
  Recipe r;
  DataSources data;
  const std::string path = find_recipe(o.recipe);
  const int status = agree_on_setup([&] {
    r = load_recipe(path, o.overrides);
    resolve_layout(r, process_world());
    data = open_data(r);
  });
  if (status != 0) return status;
  const bool cuda = r.train.device == Device::kCuda;
  const bool talk = process_rank() == 0;
  std::string why;
  if (cuda && usable_gpus(&why) == 0) {
    if (talk)
      fmt::print("SKIPPED: bench_train: train.device is cuda but no GPU is usable ({})\n", why);
    return 77;
  }
  const ModelStats stats = model_stats(r.model, r.data.seq_len);
  ProfilerPeaks peaks;
  peaks.flops_per_s = 1e12 * o.peak_tflops.value_or(cuda ? kH100PeakTflops : kCpuPeakTflops);
  peaks.bytes_per_s = 1e9 * o.hbm_gbps.value_or(cuda ? kH100Gbps : kCpuGbps);
  if (talk) {
    fmt::print("{}\n{}\n", device_line(cuda), shape_line(r, o.recipe, stats));
    fmt::print("peaks: {:.4g} TFLOP/s, {:.4g} GB/s per rank ({})\n", peaks.flops_per_s / 1e12,
               peaks.bytes_per_s / 1e9,
               o.peak_tflops || o.hbm_gbps ? "from the flags"
               : cuda                      ? "H100 SXM datasheet: bf16 dense, HBM3"
                                           : "defaults for the 2-core VM of docs/PERFORMANCE.md");
    std::fflush(stdout);
  }

  // The groups as `tramontane train` makes them: NCCL on GPUs with one rank each (parallel.comm).
  auto mpi = mpi_world();
  auto world = open_world(r.parallel.comm, r.origin_of("parallel.comm"), *mpi,
                          open_device(r.train.device, local_rank()));
  ParallelEnv env = ParallelEnv::create(*world, layout_of(r.parallel));
  Profiler profiler(peaks, /*enabled=*/false);
  Trainer trainer(r, data, env, &profiler);
  const auto sync = [&] {
#if TMT_WITH_CUDA
    if (cuda) cuda::synchronize_device();
#endif
  };
  // One step between synchronizations, in seconds.
  using Clock = std::chrono::steady_clock;
  const auto timed_step = [&](double* loss) {
    sync();
    const auto t0 = Clock::now();
    const StepMetrics sm = trainer.step();
    sync();
    if (loss != nullptr) *loss = sm.loss;
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };

  for (int64_t i = 0; i < o.warmup; ++i) timed_step(nullptr);
  std::vector<double> times;
  double first_loss = 0, last_loss = 0;
  for (int64_t i = 0; i < o.steps; ++i)
    times.push_back(timed_step(i == 0 ? &first_loss : &last_loss));
  if (o.steps == 1) last_loss = first_loss;
  const std::string memory = memory_line(trainer, cuda);
  if (talk) {
    print_summary(r, times, o.warmup, static_cast<double>(trainer.tokens_per_step()),
                  stats.flops_per_token(), peaks.flops_per_s, memory, first_loss, last_loss);
  }

  // The profiled step. A first one sizes the profiler's records (and on CUDA its event pool), so
  // that the one reported grows nothing.
  profiler.set_enabled(true);
  timed_step(nullptr);
  profiler.reset();
  const double wall = timed_step(nullptr);
  profiler.set_enabled(false);
  const std::string table = profiler.table(1, wall);
  if (talk) {
    fmt::print(
        "\nper-op times of one more step (rank 0; {} op calls; floor = max(FLOPs / {:.4g} TFLOP/s, "
        "bytes / {:.4g} GB/s); outside ops = the step's wall time not inside an op: host work, "
        "communication, the device idle):\n\n{}",
        profiler.calls(), peaks.flops_per_s / 1e12, peaks.bytes_per_s / 1e9, table);
  }
  return 0;
}

}  // namespace
}  // namespace tmt

int main(int argc, char** argv) {
  tmt::Options options;
  try {
    options = tmt::parse_args(argc, argv);
  } catch (const tmt::InputError& e) {
    if (tmt::launcher_rank() == 0) std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  if (options.help) {
    if (tmt::launcher_rank() == 0) std::fputs(tmt::kUsage, stdout);
    return 0;
  }
  tmt::cpu::init_threads();
  tmt::MpiEnvironment mpi(&argc, &argv);
  try {
    return tmt::run(options);
  } catch (const tmt::InputError& e) {
    if (tmt::process_rank() == 0) std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
