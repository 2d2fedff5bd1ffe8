// The training loop: for each optimizer step, the micro-batches through the pipeline schedule
// (gradient accumulation), the gradient reductions (parallel/grad_sync.h: tensor-parallel replicas,
// then data-parallel ranks) and the global norm, clipping, a NaN/Inf guard and a loss-spike guard
// (train.spike_zscore, optim/loss_spike.h), AdamW, validation and metrics.
//
// Which data a step sees depends only on the recipe: sequence j of step s is global sequence number
// s · global_batch + j of the source, and data-parallel rank d takes the contiguous share
// [d · global_batch / dp, (d + 1) · global_batch / dp), so the same recipe trains on the same
// tokens at every parallel layout.
#pragma once

#include <memory>
#include <optional>

#include "kernels/base/workspace.h"
#include "parallel/groups.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/data_sources.h"
#include "trainer/metrics/metrics.h"
#include "trainer/model/model.h"
#include "trainer/optim/loss_spike.h"
#include "trainer/optim/optimizer.h"
#include "trainer/pipeline/one_f_one_b.h"
#include "trainer/recipe/recipe.h"

namespace tmt {

class Trainer {
 public:
  // `recipe` must be resolved for env's layout; both must outlive the trainer.
  // `profiler` (for the step benchmark, tests/tools/bench_train.cpp; it must outlive the trainer)
  // goes into the Context that the model's layers and the optimizer copy at construction, so
  // every op records into it while it is enabled (kernels/base/profiler.h). The same context
  // carries the trainer's workspace, sized for the model and the gradient norm and allocated here.
  Trainer(const Recipe& recipe, const DataSources& data, ParallelEnv& env,
          Profiler* profiler = nullptr);

  // One optimizer step: every rank returns the same metrics (reduced over the data-parallel ranks).
  StepMetrics step();
  // Mean validation loss over log.eval_batches micro-batches, shared out over the data-parallel
  // ranks.
  std::optional<double> validate();
  // Forward passes over validation sequences [0, sequences), in micro-batches shared out over the
  // data-parallel ranks (the last one's sequences past the end count nothing). Collective; every
  // rank returns the sums over all ranks.
  struct Evaluation {
    double loss_sum = 0;  // cross-entropy summed over the predicted tokens
    int64_t tokens = 0;
  };
  Evaluation evaluate(int64_t sequences);

  Model& model() { return model_; }
  const Model& model() const { return model_; }
  GradSync& grad_sync() { return grad_sync_; }
  const GradSync& grad_sync() const { return grad_sync_; }
  Optimizer& optimizer() { return optimizer_; }
  const Optimizer& optimizer() const { return optimizer_; }
  int64_t steps_done() const { return step_; }
  // Continues after `step` optimizer steps (a loaded checkpoint).
  void resume_at(int64_t step) { step_ = step; }
  int64_t tokens_per_step() const { return step_tokens_; }
  // The device scratch every op of the step borrows (kernels/base/workspace.h).
  const Workspace& workspace() const { return workspace_; }
  size_t batch_arena_bytes() const { return batch_arena_.capacity(); }  // the micro-batches' tokens

 private:
  // The step's tokens per expert of each MoE layer, from this rank's counts (log.per_layer).
  std::vector<std::vector<double>> step_expert_load(std::vector<double> load);

  const Recipe& r_;
  const DataSources& data_;
  ParallelEnv& env_;
  // Before ctx_, which points at it from the start: the model and GradSync copy ctx_ when
  // they are made, and the workspace is allocated once they have said what they need.
  Workspace workspace_;
  Context ctx_;
  int64_t micro_, n_micro_, step_tokens_;
  Model model_;
  GradSync grad_sync_;
  Optimizer optimizer_;
  Arena batch_arena_;
  OneFOneB schedule_;
  LossSpikes spikes_;  // train.spike_zscore
  int64_t step_ = 0;
};

// Where a run starts: nothing (the recipe's initial weights), a checkpoint to resume (kTrainingState)
// or a checkpoint's weights for a new run at step 0 (kWeights: train --init-from).
struct StartFrom {
  std::string checkpoint;
  LoadWhat what = LoadWhat::kTrainingState;
};

// Trains on the ranks of MPI_COMM_WORLD from checked input, first loading `from`; returns the
// process exit status. Writes checkpoints every checkpoint.every steps, at the end, and when
// SIGTERM or SIGUSR1 arrives (then exits 0). A checkpoint that cannot be written ends the run with
// 2 (one `error:` line) under checkpoint.on_error: stop, or is reported (a `warning:` line, the
// step's checkpoint_error) and tried again at the next checkpoint under continue, except the
// run's last. Data files that change under the run end it with 2 (checked every few steps and
// before each validation and checkpoint; data/shard.h).
int train(const Recipe& recipe, const DataSources& data, const StartFrom& from = {});

// `tramontane eval`: forward passes over every window of the validation split (data.val must be
// set) with the weights of `checkpoint` (the initial weights when empty); rank 0 prints one JSON
// line {"step", "val_loss", "tokens", "perplexity"}. Returns the exit status.
int evaluate(const Recipe& recipe, const DataSources& data, const std::string& checkpoint);

}  // namespace tmt
