#include "trainer/trainer.h"

#include <chrono>
#include <cmath>

#include "kernels/base/log.h"
#include "trainer/data_sources.h"
#include "trainer/lr_schedule.h"
#include "trainer/metrics.h"
#include "trainer/model/model.h"
#include "trainer/model_stats.h"
#include "trainer/optimizer.h"

namespace tmt {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Mean validation loss over log.eval_batches micro-batches of the validation source.
double validate(Model& model, const SequenceSource& source, const MicroBatch& batch,
                const Recipe& r, int64_t* tokens) {
  double sum = 0.0;
  int64_t n = 0;
  for (int64_t i = 0; i < r.log.eval_batches; ++i) {
    fill_batch(source, i * r.train.micro_batch, batch.inputs, batch.targets);
    const LossParts p = model.forward(batch);
    sum += p.lm_loss_sum;
    n += p.lm_tokens;
  }
  *tokens = n;
  return n > 0 ? sum / static_cast<double>(n) : 0.0;
}

}  // namespace

int train(const Recipe& r, const DataSources& data) {
  const Context ctx{};
  const int64_t dp = r.parallel.dp;
  const int64_t dp_rank = 0;
  const int64_t micro = r.train.micro_batch;
  const int64_t n_micro = r.train.global_batch / (micro * dp);
  const int64_t seq = r.data.seq_len;
  const int64_t step_tokens = r.train.global_batch * seq;

  Model model(r, ctx, DType::kF32, micro);
  Optimizer optimizer(ctx, model.params(), r.optimizer);
  Arena batch_arena(Device::kCpu, 2 * Arena::footprint(DType::kI32, {micro, seq}), "batch");
  const MicroBatch batch{batch_arena.alloc(DType::kI32, {micro, seq}),
                         batch_arena.alloc(DType::kI32, {micro, seq})};

  const ModelStats stats = model_stats(r.model, seq);
  log_info("model: {} parameters ({} active per token), {} on this rank; activations {:.1f} MiB",
           human_count(static_cast<double>(stats.total_params)),
           human_count(static_cast<double>(stats.active_params)),
           human_count(static_cast<double>(model.params().numel())),
           static_cast<double>(model.activation_bytes()) / (1 << 20));
  log_info("data: {}", data.train->describe());
  const double optimal = data.train->optimal_loss();
  log_info(
      "step: {} sequences x {} tokens = {} tokens, {} micro-batch(es) of {}; initial loss should "
      "be near "
      "ln(vocab) = {:.4f}{}",
      r.train.global_batch, seq, step_tokens, n_micro, micro,
      std::log(static_cast<double>(r.model.vocab_size)),
      std::isnan(optimal) ? "" : fmt::format(", the data's optimal loss is {:.4f}", optimal));

  MetricsLog metrics(r.run.dir, r.train.steps, r.log.every, process_rank() == 0);
  int64_t bad_in_a_row = 0;
  const auto run_start = Clock::now();
  for (int64_t step = 0; step < r.train.steps; ++step) {
    const auto t0 = Clock::now();
    const double lr = learning_rate(r, step);
    model.params().zero_grads();
    LossParts total;
    for (int64_t m = 0; m < n_micro; ++m) {
      const int64_t first =
          step * r.train.global_batch + dp_rank * (r.train.global_batch / dp) + m * micro;
      fill_batch(*data.train, first, batch.inputs, batch.targets);
      const LossParts p = model.forward_backward(batch, 1.0 / static_cast<double>(step_tokens),
                                                 1.0 / static_cast<double>(n_micro * dp));
      total.lm_loss_sum += p.lm_loss_sum;
      total.lm_tokens += p.lm_tokens;
      total.aux_loss += p.aux_loss;
      total.z_loss += p.z_loss;
      total.dropped += p.dropped;
      if (total.max_load.empty()) total.max_load.assign(p.max_load.size(), 0.0);
      for (size_t i = 0; i < p.max_load.size(); ++i)
        total.max_load[i] = std::max(total.max_load[i], p.max_load[i]);
    }
    const double grad_norm = std::sqrt(grad_norm_squared(ctx, model.params()));
    StepMetrics sm;
    sm.step = step + 1;
    sm.lm_loss = total.lm_loss_sum / static_cast<double>(std::max<int64_t>(total.lm_tokens, 1));
    sm.aux_loss = total.aux_loss / static_cast<double>(n_micro);
    sm.z_loss = total.z_loss / static_cast<double>(n_micro);
    sm.loss = sm.lm_loss + sm.aux_loss + sm.z_loss;
    sm.lr = lr;
    sm.grad_norm = grad_norm;
    sm.tokens = step_tokens;
    sm.max_load = total.max_load;
    sm.dropped = total.dropped;
    sm.skipped = !std::isfinite(grad_norm) || !std::isfinite(sm.loss);
    if (sm.skipped) {
      ++bad_in_a_row;
      if (bad_in_a_row > r.train.max_skipped_steps) {
        metrics.step(sm);
        if (process_rank() == 0) {
          fmt::print(stderr,
                     "error: {} steps in a row had a non-finite loss or gradient norm (the last at "
                     "step {}); "
                     "the run stops (lower optimizer.lr, or raise train.max_skipped_steps)\n",
                     bad_in_a_row, step + 1);
        }
        return 1;
      }
    } else {
      bad_in_a_row = 0;
      optimizer.step(lr, clip_factor(grad_norm, r.optimizer.grad_clip));
    }
    sm.step_time_s = seconds_since(t0);  // validation is not part of the step's time
    sm.tokens_per_s = static_cast<double>(step_tokens) / sm.step_time_s;
    if (data.val && r.log.eval_every > 0 &&
        ((step + 1) % r.log.eval_every == 0 || step + 1 == r.train.steps)) {
      int64_t val_tokens = 0;
      sm.val_loss = validate(model, *data.val, batch, r, &val_tokens);
    }
    metrics.step(sm);
  }
  const double total_s = seconds_since(run_start);
  metrics.note(fmt::format("done: {} steps in {}, {:.0f} tokens/s", r.train.steps,
                           format_duration(total_s),
                           static_cast<double>(r.train.steps * step_tokens) / total_s));
  return 0;
}

}  // namespace tmt
