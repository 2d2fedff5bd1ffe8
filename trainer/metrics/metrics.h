// What a run reports: one JSON line per optimizer step in run.dir/metrics.jsonl (DESIGN.md §6), a
// console line every log.every steps, and a progress bar between them when stdout is a terminal.
// The console line ends with the ETA (the steps left times the mean of the last kRecentSteps step
// times) and the age of the newest complete checkpoint ("ckpt 3m05s ago", or "ckpt none": what a
// kill now would lose). Rank 0 writes; other ranks' calls do nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "trainer/metrics/tensorboard.h"

namespace tmt {

struct StepMetrics {
  int64_t step = 0;  // 1-based: the number of optimizer steps done
  double loss = 0, lm_loss = 0, aux_loss = 0, z_loss = 0;
  double lr = 0, grad_norm = 0;
  int64_t tokens = 0;  // tokens in this step (global batch)
  double tokens_per_s = 0, step_time_s = 0;
  bool skipped = false;               // non-finite loss or gradients, or a loss spike: not applied
  std::optional<double> loss_zscore;  // train.spike_zscore on, after the warm-up
  bool loss_spike = false;            // the z-score exceeded train.spike_zscore
  std::vector<double> max_load;  // per MoE layer: busiest expert's assignments / mean
  int64_t dropped = 0;
  std::optional<double> val_loss;  // on steps that ran validation (log.eval_every)
  // On steps whose checkpoint could not be written: why (checkpoint.on_error).
  std::optional<std::string> checkpoint_error;
  // log.per_layer (trainer/per_layer.h): each block's gradient norm, the other parameters', and
  // [MoE layer][expert] the tokens each expert received.
  std::vector<double> grad_norm_layers;
  std::optional<double> grad_norm_other;
  std::vector<std::vector<double>> expert_load;
};

class MetricsLog {
 public:
  // Starts run_dir/metrics.jsonl afresh on rank 0 or, resuming after step `resumed_at` > 0, keeps
  // its lines up to that step (later ones are about to be recomputed) and appends.
  // tensorboard: also write TensorBoard scalars to run_dir/tensorboard/.
  MetricsLog(const std::string& run_dir, int64_t total_steps, int64_t log_every, bool is_rank0,
             bool tensorboard = false, int64_t resumed_at = 0);
  ~MetricsLog();

  // One line of metrics.jsonl per optimizer step (a contract: tools read it line by line).
  void step(const StepMetrics& m);
  // A line for people only (rank 0), clearing the progress bar first.
  void note(const std::string& text);
  // A checkpoint became complete `age_s` seconds ago (0: now; a resumed run passes its own).
  void checkpoint_saved(double age_s = 0);

  static constexpr size_t kRecentSteps = 20;  // the step times the ETA averages

  static nlohmann::json to_json(const StepMetrics& m);

 private:
  void clear_bar();
  std::ofstream file_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
  int64_t total_steps_, log_every_;
  bool rank0_, tty_;
  bool bar_shown_ = false;
  std::deque<double> recent_step_s_;  // the last kRecentSteps step times, for the ETA
  std::optional<std::chrono::steady_clock::time_point> checkpoint_at_;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12s"
// Seconds since the file was last written (by the file's clock), nullopt when it cannot be read.
std::optional<double> seconds_since_written(const std::string& path);

}  // namespace tmt
