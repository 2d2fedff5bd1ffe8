// `tramontane runs DIR`: what the runs under DIR have done, one line (or JSON object) per run, from
// their files alone (nothing is locked or written, so it watches runs in progress too). A run is a
// directory as `train` writes it (DESIGN.md §6), DIR itself or one up to kMaxDepth levels below it
// (a run's own subdirectories are not searched):
//
//   recipe.resolved.yaml   train.steps: the steps the run is to take
//   metrics.jsonl          one JSON line per step: the last step, its loss, lr, tokens/s, the last
//                          line with val_loss (a damaged line, e.g. the last after kill -9, is
//                          skipped and counted)
//   checkpoints/latest     the newest complete checkpoint (format.h); its age is its index's
//   memory.json            the number of ranks (memory_report.h)
//
// State: finished when the newest checkpoint is at train.steps (train saves at the end); running
// when metrics.jsonl (or, before the first step, recipe.resolved.yaml) changed within the last
// max(kRunningWindowS, 10 step times); otherwise stopped (killed, preempted, failed or stopped by
// a signal: all resume from the checkpoint).
//
// --json prints {"dir", "runs": [one object per run, sorted by directory]}, each with run (the
// directory as DIR/...), state, step, total_steps, loss, lm_loss, lr, grad_norm, tokens_per_s,
// step_time_s (the last good line's), val_loss and val_step (the last validation), checkpoint
// ({dir, step, age_s} or null), ranks (memory.json's), damaged_lines and updated_age_s; what is
// not known is null.
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "kernels/base/check.h"
#include "trainer/commands/commands.h"
#include "trainer/metrics/metrics.h"

namespace tmt {
namespace {

namespace fs = std::filesystem;

constexpr double kRunningWindowS = 120;
constexpr int kMaxDepth = 4;  // how deep under DIR runs are looked for

struct CheckpointInfo {
  std::string dir;
  std::optional<int64_t> step;
  double age_s = 0;
};

struct RunSummary {
  std::string run;  // the directory, as DIR/relative
  std::optional<int64_t> total_steps;
  std::optional<nlohmann::json> last;  // the last good line of metrics.jsonl
  std::optional<double> val_loss;
  std::optional<int64_t> val_step;
  int64_t damaged_lines = 0;
  std::optional<CheckpointInfo> checkpoint;
  std::optional<int64_t> ranks;
  double updated_age_s = 0;  // since metrics.jsonl (or the resolved recipe) last changed
  std::string state;
};

bool is_run_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p / "metrics.jsonl", ec) ||
         fs::is_regular_file(p / "recipe.resolved.yaml", ec);
}

// Run directories at or under `dir`; a run's own subdirectories are not searched.
void find_runs(const fs::path& dir, int depth, std::vector<fs::path>& out) {
  if (is_run_dir(dir)) {
    out.push_back(dir);
    return;
  }
  if (depth == 0) return;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory(ec)) find_runs(e.path(), depth - 1, out);
  }
}

double age_s(const fs::path& p) { return seconds_since_written(p.string()).value_or(0); }

std::optional<double> number(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_number()) return std::nullopt;
  return j[key].get<double>();
}

std::optional<int64_t> train_steps(const fs::path& recipe) {
  try {
    const YAML::Node steps = YAML::LoadFile(recipe.string())["train"]["steps"];
    if (steps) return steps.as<int64_t>();
  } catch (const YAML::Exception&) {
  }
  return std::nullopt;
}

std::optional<CheckpointInfo> newest_checkpoint(const fs::path& run) {
  const fs::path root = run / "checkpoints";
  std::ifstream in(root / "latest");
  std::string name;
  std::error_code ec;
  if (!(in >> name) || !fs::is_directory(root / name, ec)) return std::nullopt;
  CheckpointInfo c;
  c.dir = (root / name).string();
  if (name.rfind("step-", 0) == 0 && name.size() > 5 &&
      std::all_of(name.begin() + 5, name.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
    c.step = std::stoll(name.substr(5));
  }
  c.age_s =
      age_s(fs::exists(root / name / "index.h5", ec) ? root / name / "index.h5" : root / "latest");
  return c;
}

RunSummary summarize(const fs::path& path, const std::string& shown) {
  RunSummary s;
  s.run = shown;
  s.total_steps = train_steps(path / "recipe.resolved.yaml");
  std::ifstream in(path / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("step") ||
        !j["step"].is_number_integer()) {
      ++s.damaged_lines;
      continue;
    }
    if (const auto v = number(j, "val_loss")) {
      s.val_loss = v;
      s.val_step = j["step"].get<int64_t>();
    }
    s.last = j;
  }
  s.checkpoint = newest_checkpoint(path);
  std::ifstream memory(path / "memory.json");
  if (memory) {
    const auto j = nlohmann::json::parse(memory, nullptr, false);
    if (!j.is_discarded() && j.contains("ranks") && j["ranks"].is_array())
      s.ranks = static_cast<int64_t>(j["ranks"].size());
  }
  std::error_code ec;
  s.updated_age_s = age_s(fs::exists(path / "metrics.jsonl", ec) ? path / "metrics.jsonl"
                                                                 : path / "recipe.resolved.yaml");
  const double step_time = s.last ? number(*s.last, "step_time_s").value_or(0) : 0;
  if (s.total_steps && s.checkpoint && s.checkpoint->step &&
      *s.checkpoint->step >= *s.total_steps) {
    s.state = "finished";
  } else if (s.updated_age_s < std::max(kRunningWindowS, 10 * step_time)) {
    s.state = "running";
  } else {
    s.state = "stopped";
  }
  return s;
}

template <class T>
nlohmann::json or_null(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

nlohmann::json to_json(const RunSummary& s) {
  nlohmann::json j = {{"run", s.run},
                      {"state", s.state},
                      {"total_steps", or_null(s.total_steps)},
                      {"val_loss", or_null(s.val_loss)},
                      {"val_step", or_null(s.val_step)},
                      {"damaged_lines", s.damaged_lines},
                      {"ranks", or_null(s.ranks)},
                      {"updated_age_s", s.updated_age_s}};
  for (const char* key :
       {"step", "loss", "lm_loss", "lr", "grad_norm", "tokens_per_s", "step_time_s"}) {
    j[key] = s.last && s.last->contains(key) ? (*s.last)[key] : nlohmann::json(nullptr);
  }
  j["checkpoint"] = nullptr;
  if (s.checkpoint) {
    j["checkpoint"] = {{"dir", s.checkpoint->dir},
                       {"step", or_null(s.checkpoint->step)},
                       {"age_s", s.checkpoint->age_s}};
  }
  return j;
}

std::string fixed(const std::optional<double>& v, int decimals) {
  return v ? fmt::format("{:.{}f}", *v, decimals) : "-";
}

void print_table(const std::vector<RunSummary>& runs) {
  struct Row {
    std::string run, step, loss, val, tokens_per_s, checkpoint, state;
  };
  std::vector<Row> rows = {{"run", "step", "loss", "val", "tok/s", "checkpoint", "state"}};
  for (const RunSummary& s : runs) {
    Row r{s.run, "-", "-", fixed(s.val_loss, 4), "-", "-", s.state};
    if (s.last) {
      r.step = fmt::format("{}", (*s.last)["step"].get<int64_t>());
      r.loss = fixed(number(*s.last, "loss"), 4);
      r.tokens_per_s = fixed(number(*s.last, "tokens_per_s"), 0);
    }
    if (s.total_steps) r.step += fmt::format("/{}", *s.total_steps);
    if (s.checkpoint) {
      r.checkpoint = fmt::format("{} ({} ago)",
                                 s.checkpoint->step ? fmt::format("{}", *s.checkpoint->step) : "?",
                                 format_duration(s.checkpoint->age_s));
    }
    rows.push_back(r);
  }
  size_t w[6] = {0, 0, 0, 0, 0, 0};
  for (const Row& r : rows) {
    const std::string* cols[6] = {&r.run, &r.step, &r.loss, &r.val, &r.tokens_per_s, &r.checkpoint};
    for (int i = 0; i < 6; ++i) w[i] = std::max(w[i], cols[i]->size());
  }
  for (const Row& r : rows) {
    fmt::print("{:<{}}  {:>{}}  {:>{}}  {:>{}}  {:>{}}  {:<{}}  {}\n", r.run, w[0], r.step, w[1],
               r.loss, w[2], r.val, w[3], r.tokens_per_s, w[4], r.checkpoint, w[5], r.state);
  }
}

}  // namespace

int run_runs(const RunsOptions& options) {
  const fs::path dir(options.dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) input_error("{}: no such directory", options.dir);
  std::vector<fs::path> found;
  find_runs(dir, kMaxDepth, found);
  if (found.empty()) {
    input_error(
        "{}: no runs here (a run directory holds metrics.jsonl or recipe.resolved.yaml, as "
        "`train` writes them to run.dir)",
        options.dir);
  }
  std::sort(found.begin(), found.end());
  std::vector<RunSummary> runs;
  for (const fs::path& p : found) {
    const fs::path rel = p.lexically_relative(dir);
    const std::string shown =
        rel.empty() || rel == "." ? options.dir : (dir / rel).lexically_normal().string();
    runs.push_back(summarize(p, shown));
  }
  if (options.json) {
    nlohmann::json j = {{"dir", options.dir}, {"runs", nlohmann::json::array()}};
    for (const RunSummary& s : runs) j["runs"].push_back(to_json(s));
    fmt::print("{}\n", j.dump(1, ' ', false, nlohmann::json::error_handler_t::replace));
    return 0;
  }
  print_table(runs);
  return 0;
}

}  // namespace tmt
