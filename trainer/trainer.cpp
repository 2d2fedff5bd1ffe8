#include "trainer/trainer.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <thread>

#include "kernels/base/device.h"
#include "kernels/base/log.h"
#include "kernels/copy.h"
#include "kernels/fp8.h"
#include "kernels/reduce.h"
#include "parallel/mpi_env.h"
#include "parallel/open_world.h"
#include "parallel/watchdog.h"
#include "trainer/memory_plan.h"
#include "trainer/memory_report.h"
#include "trainer/model/model_stats.h"
#include "trainer/optim/lr_schedule.h"
#include "trainer/per_layer.h"
#include "trainer/pipeline/stages.h"

namespace tmt {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// For the watchdog's tests: TMT_FAULT_<WHAT>=STEP:RANK asks rank RANK to fail at step STEP.
bool fault_here(const char* variable, int64_t step) {
  const char* v = std::getenv(variable);
  long long at = -1, rank = -1;
  return v != nullptr && std::sscanf(v, "%lld:%lld", &at, &rank) == 2 && at == step &&
         rank == process_rank();
}

uintmax_t directory_bytes(const std::string& dir) {
  uintmax_t n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.is_regular_file(ec)) n += e.file_size(ec);
  }
  return n;
}

}  // namespace

namespace {

// One bucket per parameter group: its TP replicas, and its data-parallel replicas (DP for dense
// parameters, EDP for experts).
std::vector<GradBucket> grad_buckets(const ParamStore& params, ParallelEnv& env) {
  std::vector<GradBucket> buckets;
  for (const ParamGroup& g : params.groups()) {
    buckets.push_back({.grads = g.grads,
                       .tp_replicas = g.tp_replicas,
                       .replicas = g.kind == ParamKind::kDense ? env.dp_cp.get() : env.edp.get()});
  }
  return buckets;
}

// The device's context with the benchmark's profiler in it (null when not profiling): every layer,
// the optimizer and the schedule copy this context, so they all report to the same profiler.
Context with_profiler(Context ctx, Profiler* profiler) {
  ctx.profiler = profiler;
  return ctx;
}

// The same for the trainer's workspace: they all borrow from it.
Context with_workspace(Context ctx, Workspace* workspace) {
  ctx.workspace = workspace;
  return ctx;
}

}  // namespace

Trainer::Trainer(const Recipe& r, const DataSources& data, ParallelEnv& env, Profiler* profiler)
    : r_(r),
      data_(data),
      env_(env),
      ctx_(with_workspace(with_profiler(open_device(r.train.device, local_rank()), profiler),
                          &workspace_)),
      micro_(r.train.micro_batch),
      n_micro_(r.train.global_batch / (r.train.micro_batch * r.parallel.dp)),
      step_tokens_(r.train.global_batch * r.data.seq_len),
      model_(r.model, model_run_of(r), ctx_,
             model_shard_of(r, env.coords.pp, env.tp.get(), env.experts.get(), env.cp.get())),
      grad_sync_(ctx_, grad_buckets(model_.params(), env), env.tp.get(), env.world.get(),
                 r.parallel.zero1),
      optimizer_(ctx_, model_.params(), r.optimizer, grad_sync_),
      batch_arena_(ctx_.device, OneFOneB::batch_bytes(model_, r.train.micro_batch, r.data.seq_len),
                   "batch"),
      schedule_(model_, env.pp.get(), r.train.micro_batch, r.data.seq_len, batch_arena_) {
  std::string why;
  TMT_CHECK(r.train.precision != Precision::kFp8 || fp8_available(ctx_.device, &why),
            "train.precision fp8 cannot run on this device: {}", why);
  // What the model's ops and the gradient norm (GradSync) borrow (nothing on the CPU).
  workspace_.reserve(model_.workspace_bytes());
  workspace_.reserve(sum_squares_workspace_bytes(ctx_.device));
  workspace_.allocate(ctx_.device);
}

std::vector<std::vector<double>> Trainer::step_expert_load(std::vector<double> load) {
  if (load.empty()) return {};
  // Each rank's counts are its micro-batches' whole (TP-summed) ones of its stage's layers: summed
  // over the data-parallel ranks and the stages, they cover every token each layer routed.
  Tensor t{load.data(), DType::kF64, Device::kCpu, Shape{static_cast<int64_t>(load.size())}};
  env_.dp->all_reduce(t);
  env_.pp->all_reduce(t);
  const auto experts = static_cast<size_t>(r_.model.moe->n_experts);
  std::vector<std::vector<double>> layers;
  for (size_t i = 0; i < load.size(); i += experts)
    layers.emplace_back(load.begin() + static_cast<std::ptrdiff_t>(i),
                        load.begin() + static_cast<std::ptrdiff_t>(i + experts));
  return layers;
}

StepMetrics Trainer::step() {
  const auto t0 = Clock::now();
  watchdog_set_step(step_ + 1);
  watchdog_set_phase("step");
  const double lr = learning_rate(r_, step_);
  const int64_t dp = r_.parallel.dp;
  const int64_t share = r_.train.global_batch / dp;
  model_.params().zero_grads();
  const int64_t step_first = step_ * r_.train.global_batch + env_.coords.dp * share;
  const LossParts p = schedule_.train(
      n_micro_,
      [&](int64_t m, MicroBatch& batch) {
        fill_batch(*data_.train, step_first + m * micro_, batch.inputs, batch.targets);
      },
      1.0 / static_cast<double>(step_tokens_), 1.0 / static_cast<double>(n_micro_ * dp));
  // [lm loss sum, lm tokens, aux, z, dropped], summed over the micro-batches, then over the
  // data-parallel ranks and the pipeline stages (the loss lives on the last, the router losses on
  // the stages of their layers); TP ranks already agree.
  double sums[5] = {p.lm_loss_sum, static_cast<double>(p.lm_tokens), p.aux_loss, p.z_loss,
                    static_cast<double>(p.dropped)};
  // The language-model loss of each sequence's other chunks is on its CP peers (the router's are
  // already the whole sequences').
  env_.cp->all_reduce(Tensor{sums, DType::kF64, Device::kCpu, Shape{2}});
  Tensor reduced{sums, DType::kF64, Device::kCpu, Shape{5}};
  env_.dp->all_reduce(reduced);
  env_.pp->all_reduce(reduced);
  std::vector<double> max_load = p.max_load;
  if (!max_load.empty()) {
    Tensor loads{max_load.data(), DType::kF64, Device::kCpu,
                 Shape{static_cast<int64_t>(max_load.size())}};
    env_.dp->all_reduce(loads, ReduceOp::kMax);
    env_.pp->all_reduce(loads, ReduceOp::kMax);
  }
  // (Tests of the watchdog's: this rank leaves mid-step without MPI_Finalize, or hangs outside
  // any collective, alive, as on a stuck device.)
  if (fault_here("TMT_FAULT_EXIT_AT_STEP", step_ + 1)) std::_Exit(0);
  if (fault_here("TMT_FAULT_HANG_AT_STEP", step_ + 1)) {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  // Gradients: summed over the TP ranks that hold a replica of a parameter and each saw part of
  // the tokens, then over the data-parallel replicas (the loss was already scaled to the
  // global-batch mean); the norm counts every parameter once.
  grad_sync_.begin();
  const double grad_norm = grad_sync_.finish();

  StepMetrics sm;
  sm.step = ++step_;
  sm.lm_loss = sums[0] / std::max(sums[1], 1.0);
  sm.aux_loss = sums[2] / static_cast<double>(n_micro_ * dp);
  sm.z_loss = sums[3] / static_cast<double>(n_micro_ * dp);
  sm.loss = sm.lm_loss + sm.aux_loss + sm.z_loss;
  sm.lr = lr;
  sm.grad_norm = grad_norm;
  sm.tokens = step_tokens_;
  sm.max_load = max_load;
  sm.dropped = static_cast<int64_t>(sums[4]);
  // Every rank sees the same reduced loss and norm, so every rank skips alike.
  sm.skipped = !std::isfinite(grad_norm) || !std::isfinite(sm.loss);
  if (r_.train.spike_zscore > 0 && !sm.skipped) {
    sm.loss_zscore = spikes_.zscore(sm.loss);
    sm.loss_spike = sm.loss_zscore && *sm.loss_zscore > r_.train.spike_zscore;
    sm.skipped = sm.loss_spike && r_.train.spike_action == SpikeAction::kSkip;
    if (!sm.skipped) spikes_.add(sm.loss);
  }
  if (r_.log.per_layer) {
    const LayerGradNorms norms =
        layer_grad_norms(model_.params(), grad_sync_, *env_.world, r_.model.n_layers, ctx_);
    sm.grad_norm_layers = norms.layers;
    sm.grad_norm_other = norms.other;
    sm.expert_load = step_expert_load(p.expert_load);
  }
  if (!sm.skipped) {
    optimizer_.step(lr, clip_factor(grad_norm, r_.optimizer.grad_clip));
    // The expert biases move by the step's loads: each rank's counts are its micro-batches'
    // whole (TP-summed) ones, so summing over DP covers every token the layer routed.
    if (r_.model.moe && r_.model.moe->expert_bias()) {
      std::vector<double> load = p.expert_load;
      Tensor loads{load.data(), DType::kF64, Device::kCpu,
                   Shape{static_cast<int64_t>(load.size())}};
      env_.dp->all_reduce(loads);
      model_.update_expert_bias(load);
    }
  }
  synchronize(ctx_);  // the step's device work is done: its time, not the time to queue it
  sm.step_time_s = seconds_since(t0);
  sm.tokens_per_s = static_cast<double>(step_tokens_) / sm.step_time_s;
  return sm;
}

std::optional<double> Trainer::validate() {
  if (!data_.val) return std::nullopt;
  const Evaluation e = evaluate(r_.log.eval_batches * micro_);
  return e.tokens > 0 ? e.loss_sum / static_cast<double>(e.tokens) : 0.0;
}

Trainer::Evaluation Trainer::evaluate(int64_t sequences) {
  TMT_CHECK(data_.val != nullptr, "evaluate: no validation data");
  double sums[2] = {0, 0};
  // Every rank runs the same number of forward passes (expert-parallel peers meet in all-to-alls);
  // a rank past the end recomputes a batch without counting it.
  const int64_t dp = r_.parallel.dp, n = (sequences + micro_ - 1) / micro_;
  for (int64_t round = 0; round < (n + dp - 1) / dp; ++round) {
    const int64_t i = round * dp + env_.coords.dp;
    const LossParts p = schedule_.evaluate(1, [&](int64_t, MicroBatch& batch) {
      const int64_t first = (i % n) * micro_;
      fill_batch(*data_.val, first, batch.inputs, batch.targets);
      const int64_t s = batch.targets.size(1);
      for (int64_t b = std::max<int64_t>(sequences - first, 0); b < micro_; ++b)
        std::fill_n(batch.targets.ptr<int32_t>() + b * s, s, -1);
    });
    if (i >= n) continue;
    sums[0] += p.lm_loss_sum;
    sums[1] += static_cast<double>(p.lm_tokens);
  }
  Tensor reduced{sums, DType::kF64, Device::kCpu, Shape{2}};
  env_.cp->all_reduce(reduced);
  env_.dp->all_reduce(reduced);
  env_.pp->all_reduce(reduced);
  return {sums[0], static_cast<int64_t>(sums[1])};
}

namespace {

volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) { g_stop_signal = sig; }

// Steps between checks that the data files are as they were opened (besides those before each
// validation and checkpoint).
constexpr int64_t kDataCheckEvery = 50;

void check_data_unchanged(const DataSources& data) {
  data.train->check_unchanged();
  if (data.val) data.val->check_unchanged();
}

}  // namespace

namespace {

// Checks on every rank, then loads, a checkpoint into the trainer's model (and optimizer); 2 when
// it is bad (every rank agrees), else 0.
int load_into(Trainer& trainer, Communicator& world, const Recipe& r, const StartFrom& from,
              TrainingState& state) {
  const int status = agree_on_setup([&] {
    check_checkpoint(from.checkpoint, r, trainer.model().params(), world.rank(), world.size(),
                     from.what);
  });
  if (status != 0) return status;
  const auto t0 = Clock::now();
  state =
      load_checkpoint(from.checkpoint, trainer.model().params(), trainer.optimizer(), from.what);
  world.barrier();
  const double mb = static_cast<double>(directory_bytes(from.checkpoint)) / 1e6;
  log_info("{} {} at step {} ({:.1f} MB in {:.2f} s, {:.0f} MB/s)",
           from.what == LoadWhat::kWeights ? "weights from" : "resumed from", from.checkpoint,
           state.step, mb, seconds_since(t0), mb / seconds_since(t0));
  return 0;
}

// This rank's part of a run: the device, the world and its groups, the trainer (in that order:
// NCCL binds to the device that is current when its communicators are made).
struct RankRun {
  RankRun(const Recipe& r, const DataSources& data)
      : mpi(mpi_world()),
        ctx(open_device(r.train.device, local_rank())),
        world(open_world(r.parallel.comm, r.origin_of("parallel.comm"), *mpi, ctx)),
        env(ParallelEnv::create(*world, layout_of(r.parallel))),
        trainer(r, data, env) {}
  std::unique_ptr<Communicator> mpi;
  Context ctx;
  std::unique_ptr<Communicator> world;
  ParallelEnv env;
  Trainer trainer;
};

// The watchdog over this run's collectives (parallel/watchdog.h), its heartbeats in
// run.dir/heartbeat/.
WatchdogOptions watchdog_options(const Recipe& r) {
  return {.dir = (std::filesystem::path(r.run.dir) / "heartbeat").string(),
          .timeout_s = r.train.timeout_s,
          .startup_timeout_s = r.train.startup_timeout_s,
          .timeout_name = "train.timeout_s",
          .startup_timeout_name = "train.startup_timeout_s"};
}

}  // namespace

int train(const Recipe& r, const DataSources& data, const StartFrom& from) {
  const Watchdog watchdog(watchdog_options(r), *mpi_world());
  RankRun run(r, data);
  Trainer& trainer = run.trainer;
  Communicator* world = run.world.get();
  ParallelEnv& env = run.env;

  TrainingState state;
  if (!from.checkpoint.empty()) {
    watchdog_set_phase("checkpoint load", /*slow=*/true);
    if (const int status = load_into(trainer, *world, r, from, state); status != 0) return status;
    if (from.what == LoadWhat::kWeights) {
      log_info("a new run from those weights: a fresh optimizer, step 0");
      state = {};
    }
    trainer.resume_at(state.step);
    if (state.step >= r.train.steps) {
      log_info(
          "nothing to do: the checkpoint is at step {} of train.steps = {} (--no-resume "
          "starts over; a larger train.steps trains on)",
          state.step, r.train.steps);
      return 0;
    }
  }
  // Slurm sends SIGUSR1 (--signal) before a time limit and SIGTERM on preemption or scancel:
  // finish the step, save, exit 0.
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);

  const int64_t seq = r.data.seq_len;
  const ModelStats stats = model_stats(r.model, seq);
  log_info("model: {} parameters ({} active per token), {} on this rank; activations {:.1f} MiB",
           human_count(static_cast<double>(stats.total_params)),
           human_count(static_cast<double>(stats.active_params)),
           human_count(static_cast<double>(trainer.model().params().numel())),
           static_cast<double>(trainer.model().activation_bytes()) / (1 << 20));
  log_info("data: {}", data.train->describe());
  if (r.schedule.warmup_steps > r.train.steps) {
    log_info(
        "schedule.warmup_steps {} is longer than train.steps {}: the learning rate ends the run "
        "at {:.3g}, short of its peak optimizer.lr = {:.3g}",
        r.schedule.warmup_steps, r.train.steps, learning_rate(r, r.train.steps - 1),
        r.optimizer.lr);
  }
  const double optimal = data.train->optimal_loss();
  log_info(
      "step: {} sequences x {} tokens = {} tokens, {} micro-batch(es) of {} on each of {} "
      "data-parallel "
      "rank(s); initial loss should be near ln(vocab) = {:.4f}{}",
      r.train.global_batch, seq, trainer.tokens_per_step(),
      r.train.global_batch / (r.train.micro_batch * r.parallel.dp), r.train.micro_batch,
      r.parallel.dp, std::log(static_cast<double>(r.model.vocab_size)),
      std::isnan(optimal) ? "" : fmt::format(", the data's optimal loss is {:.4f}", optimal));

  MetricsLog metrics(r.run.dir, r.train.steps, r.log.every, process_rank() == 0, r.log.tensorboard,
                     state.step);
  int64_t bad_in_a_row = state.skipped_in_a_row;
  // Saves a checkpoint; a write that failed on any rank (every rank gets the same message) leaves
  // the previous one as latest and returns the message.
  const auto save = [&](int64_t step) -> std::optional<std::string> {
    const auto t0 = Clock::now();
    watchdog_set_phase("checkpoint save", /*slow=*/true);
    std::string dir;
    try {
      dir = save_checkpoint(r, env, trainer.model().params(), trainer.optimizer(),
                            {step, trainer.optimizer().steps_taken(), bad_in_a_row});
    } catch (const StorageError& e) {
      return e.what();
    }
    const double s = seconds_since(t0), mb = static_cast<double>(directory_bytes(dir)) / 1e6;
    metrics.note(
        fmt::format("checkpoint: {} ({:.1f} MB in {:.2f} s, {:.0f} MB/s)", dir, mb, s, mb / s));
    metrics.checkpoint_saved();
    return std::nullopt;
  };
  // A resumed run's newest checkpoint is the one it started from (its index is written last).
  if (!from.checkpoint.empty() && from.what == LoadWhat::kTrainingState) {
    if (const auto age = seconds_since_written(from.checkpoint + "/index.h5"))
      metrics.checkpoint_saved(*age);
  }
  const auto run_start = Clock::now();
  // The MoE layers' expert rows on the busiest rank: as planned, then as grown (expert_rows.h).
  const double expert_rows_planned = world->all_reduce_scalar(
      static_cast<double>(trainer.model().expert_rows().planned_bytes()), ReduceOp::kMax);
  double expert_rows = expert_rows_planned;
  while (trainer.steps_done() < r.train.steps) {
    StepMetrics sm = trainer.step();
    bad_in_a_row = sm.skipped ? bad_in_a_row + 1 : 0;
    if (bad_in_a_row > r.train.max_skipped_steps) {
      metrics.step(sm);
      if (process_rank() == 0) {
        fmt::print(stderr,
                   "error: {} steps in a row had a non-finite loss or gradient norm{} (the last "
                   "at step {}); the run stops (lower optimizer.lr, or raise "
                   "train.max_skipped_steps)\n",
                   bad_in_a_row, r.train.spike_zscore > 0 ? " or a loss spike" : "", sm.step);
      }
      return 1;
    }
    if (sm.step == state.step + 1) watchdog_running();
    const bool validation =
        r.log.eval_every > 0 && (sm.step % r.log.eval_every == 0 || sm.step == r.train.steps);
    const bool periodic = r.checkpoint.every > 0 && sm.step % r.checkpoint.every == 0;
    // Data that changed under the job ends it (exit 2, on every rank) before a validation or a
    // checkpoint reads or records it, and at least every kDataCheckEvery steps (data/shard.h).
    if (validation || periodic || sm.step == r.train.steps || sm.step % kDataCheckEvery == 0) {
      watchdog_set_phase("data check");
      if (const int status = agree_on_setup([&] { check_data_unchanged(data); }); status != 0)
        return status;
    }
    if (validation) {
      watchdog_set_phase("validation");
      sm.val_loss = trainer.validate();
    }
    watchdog_set_phase("after the step");
    if (sm.loss_spike) {
      metrics.note(fmt::format(
          "warning: loss spike at step {}: loss {:.4f} is {:.1f} standard deviations above the "
          "mean of the last {} steps (train.spike_zscore {}){}",
          sm.step, sm.loss, *sm.loss_zscore, LossSpikes::kWindow, r.train.spike_zscore,
          sm.skipped ? "; the step is skipped" : ""));
    }
    // Every rank learns of a signal any rank got, at the same step, and of the busiest rank's
    // expert rows (one reduction for both).
    double busiest[2] = {static_cast<double>(g_stop_signal),
                         static_cast<double>(trainer.model().expert_rows().capacity_bytes())};
    world->all_reduce(Tensor{busiest, DType::kF64, Device::kCpu, Shape{2}}, ReduceOp::kMax);
    const bool stop = busiest[0] > 0;
    if (busiest[1] > expert_rows) {
      metrics.note(fmt::format(
          "MoE expert rows grew to {:.1f} MiB on the busiest rank at step {} ({:.1f} planned for "
          "the balanced load): dropless routing keeps every token; model.moe.capacity_factor "
          "bounds the rows",
          busiest[1] / (1 << 20), sm.step, expert_rows_planned / (1 << 20)));
      expert_rows = busiest[1];
    }
    if (periodic || stop || sm.step == r.train.steps) sm.checkpoint_error = save(sm.step);
    metrics.step(sm);
    // What each rank holds, once the first step has shown the scratch's peak (memory_report.h).
    if (sm.step == state.step + 1) write_memory_json(r.run.dir, trainer, env, sm.step);
    if (sm.checkpoint_error) {
      // The run's last checkpoint (at the end, or before a signal stops it) must be written.
      if (r.checkpoint.on_error == OnCheckpointError::kStop || stop || sm.step == r.train.steps) {
        if (process_rank() == 0) {
          fmt::print(stderr, "error: {}; checkpoints/latest is still the previous one\n",
                     *sm.checkpoint_error);
          std::fflush(stderr);
        }
        return 2;
      }
      metrics.note(fmt::format(
          "warning: {}; checkpoints/latest is still the previous one, training goes on and the "
          "next checkpoint tries again (checkpoint.on_error: continue)",
          *sm.checkpoint_error));
    }
    if (stop) {
      metrics.note(
          fmt::format("stopped by a signal after step {}; resume with the same command", sm.step));
      return 0;
    }
  }
  write_memory_json(r.run.dir, trainer, env, r.train.steps);  // expert rows may have grown
  const double total_s = seconds_since(run_start);
  metrics.note(
      fmt::format("done: {} steps in {}, {:.0f} tokens/s", r.train.steps, format_duration(total_s),
                  static_cast<double>(r.train.steps * trainer.tokens_per_step()) / total_s));
  return 0;
}

int evaluate(const Recipe& r, const DataSources& data, const std::string& checkpoint) {
  RankRun run(r, data);
  Trainer& trainer = run.trainer;
  TrainingState state;
  if (!checkpoint.empty()) {
    if (const int status =
            load_into(trainer, *run.world, r, {checkpoint, LoadWhat::kWeights}, state);
        status != 0)
      return status;
  } else {
    log_info("no checkpoint in {}: evaluating the initial weights (train.seed {})", r.run.dir,
             r.train.seed);
  }
  const int64_t sequences = data.val->count();
  const auto t0 = Clock::now();
  const Trainer::Evaluation e = trainer.evaluate(sequences);
  const double loss = e.tokens > 0 ? e.loss_sum / static_cast<double>(e.tokens) : 0.0;
  log_info("evaluated {} validation sequences of {} tokens in {:.2f} s", sequences, r.data.seq_len,
           seconds_since(t0));
  if (process_rank() == 0) {
    const nlohmann::json line = {{"step", state.step},
                                 {"val_loss", loss},
                                 {"tokens", e.tokens},
                                 {"perplexity", std::exp(loss)}};
    fmt::print("{}\n", line.dump());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace tmt
