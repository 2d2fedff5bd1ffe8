#include "trainer/metrics/metrics.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <vector>

#include "kernels/base/check.h"

namespace tmt {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto total = static_cast<int64_t>(std::llround(s));
  if (total >= 3600) return fmt::format("{}h{:02}m", total / 3600, (total % 3600) / 60);
  if (total >= 60) return fmt::format("{}m{:02}s", total / 60, total % 60);
  return fmt::format("{}s", total);
}

std::optional<double> seconds_since_written(const std::string& path) {
  std::error_code ec;
  const auto t = std::filesystem::last_write_time(path, ec);
  if (ec) return std::nullopt;
  return std::chrono::duration<double>(std::filesystem::file_time_type::clock::now() - t).count();
}

MetricsLog::MetricsLog(const std::string& run_dir, int64_t total_steps, int64_t log_every,
                       bool is_rank0, bool tensorboard, int64_t resumed_at)
    : total_steps_(total_steps),
      log_every_(log_every),
      rank0_(is_rank0),
      // Launchers give every rank a pseudo-terminal, even when its output goes to a log file: the
      // progress bar is drawn only for a single process on a real terminal.
      tty_(is_rank0 && process_world() == 1 && isatty(1) != 0) {
  if (!rank0_) return;
  const auto path = std::filesystem::path(run_dir) / "metrics.jsonl";
  std::vector<std::string> kept;
  if (resumed_at > 0) {
    std::ifstream old(path);
    for (std::string line; std::getline(old, line);) {
      const auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.contains("step") && j["step"].get<int64_t>() <= resumed_at)
        kept.push_back(line);
    }
  }
  file_.open(path, std::ios::trunc);
  for (const std::string& line : kept) file_ << line << '\n';
  if (!file_) input_error("run.dir: cannot open {} for writing", path.string());
  if (tensorboard) {
    tensorboard_ = std::make_unique<TensorBoardWriter>(
        (std::filesystem::path(run_dir) / "tensorboard").string());
  }
}

MetricsLog::~MetricsLog() { clear_bar(); }

nlohmann::json MetricsLog::to_json(const StepMetrics& m) {
  nlohmann::json j;
  j["step"] = m.step;
  j["loss"] = m.loss;
  j["lm_loss"] = m.lm_loss;
  j["aux_loss"] = m.aux_loss;
  j["z_loss"] = m.z_loss;
  j["lr"] = m.lr;
  j["grad_norm"] = m.grad_norm;
  j["tokens"] = m.tokens;
  j["tokens_per_s"] = m.tokens_per_s;
  j["step_time_s"] = m.step_time_s;
  j["skipped"] = m.skipped;
  if (!m.max_load.empty()) {
    j["expert_max_load"] = m.max_load;
    j["expert_max_load_worst"] = *std::max_element(m.max_load.begin(), m.max_load.end());
  }
  if (m.dropped > 0) j["dropped_assignments"] = m.dropped;
  if (m.val_loss) j["val_loss"] = *m.val_loss;
  if (m.checkpoint_error) j["checkpoint_error"] = *m.checkpoint_error;
  if (m.loss_zscore) j["loss_zscore"] = *m.loss_zscore;
  if (m.loss_spike) j["loss_spike"] = true;
  if (!m.grad_norm_layers.empty()) j["grad_norm_layers"] = m.grad_norm_layers;
  if (m.grad_norm_other) j["grad_norm_other"] = *m.grad_norm_other;
  if (!m.expert_load.empty()) j["expert_load"] = m.expert_load;
  return j;
}

void MetricsLog::clear_bar() {
  if (bar_shown_) {
    std::fputs("\r\033[K", stdout);
    bar_shown_ = false;
  }
}

void MetricsLog::step(const StepMetrics& m) {
  if (!rank0_) return;
  // NaN/Inf are not JSON: they are written as null (the "skipped" flag says why).
  file_ << to_json(m).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  file_.flush();
  if (tensorboard_) {
    const std::pair<const char*, double> scalars[] = {{"train/loss", m.loss},
                                                      {"train/lm_loss", m.lm_loss},
                                                      {"train/aux_loss", m.aux_loss},
                                                      {"train/z_loss", m.z_loss},
                                                      {"train/lr", m.lr},
                                                      {"train/grad_norm", m.grad_norm},
                                                      {"train/tokens_per_s", m.tokens_per_s}};
    for (const auto& [tag, value] : scalars) tensorboard_->scalar(tag, m.step, value);
    if (m.val_loss) tensorboard_->scalar("val/loss", m.step, *m.val_loss);
    tensorboard_->flush();
  }
  recent_step_s_.push_back(m.step_time_s);
  if (recent_step_s_.size() > kRecentSteps) recent_step_s_.pop_front();
  const double recent = std::accumulate(recent_step_s_.begin(), recent_step_s_.end(), 0.0) /
                        static_cast<double>(recent_step_s_.size());
  const double eta = recent * static_cast<double>(total_steps_ - m.step);
  if (m.step % log_every_ == 0 || m.step == total_steps_ || m.step == 1 || m.skipped ||
      m.val_loss) {
    clear_bar();
    std::string line =
        fmt::format("step {:>{}}/{} | loss {:.4f} | lm {:.4f}", m.step,
                    std::to_string(total_steps_).size(), total_steps_, m.loss, m.lm_loss);
    if (!m.max_load.empty()) {
      line += fmt::format(" | aux {:.4f} | load {:.2f}", m.aux_loss,
                          *std::max_element(m.max_load.begin(), m.max_load.end()));
    }
    line += fmt::format(" | lr {:.2e} | gnorm {:.3f} | {:.0f} tok/s | eta {}", m.lr, m.grad_norm,
                        m.tokens_per_s, format_duration(eta));
    if (checkpoint_at_) {
      const std::chrono::duration<double> age = std::chrono::steady_clock::now() - *checkpoint_at_;
      line += fmt::format(" | ckpt {} ago", format_duration(age.count()));
    } else {
      line += " | ckpt none";
    }
    if (m.val_loss) line += fmt::format(" | val {:.4f}", *m.val_loss);
    if (m.skipped) line += " | SKIPPED (non-finite gradients)";
    fmt::print("{}\n", line);
    std::fflush(stdout);
  } else if (tty_) {
    constexpr int kWidth = 30;
    const auto filled = static_cast<int>(kWidth * m.step / std::max<int64_t>(total_steps_, 1));
    fmt::print("\r[{}{}] step {}/{} loss {:.4f} eta {}",
               std::string(static_cast<size_t>(filled), '='),
               std::string(static_cast<size_t>(kWidth - filled), ' '), m.step, total_steps_, m.loss,
               format_duration(eta));
    std::fflush(stdout);
    bar_shown_ = true;
  }
}

void MetricsLog::checkpoint_saved(double age_s) {
  checkpoint_at_ = std::chrono::steady_clock::now() -
                   std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                       std::chrono::duration<double>(std::max(age_s, 0.0)));
}

void MetricsLog::note(const std::string& text) {
  if (!rank0_) return;
  clear_bar();
  fmt::print("{}\n", text);
  std::fflush(stdout);
}

}  // namespace tmt
