#include "trainer/memory_report.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kernels/base/check.h"
#include "kernels/base/device.h"
#include "kernels/base/log.h"

namespace tmt {

RankMemory measure_memory(const Trainer& trainer, const ParallelEnv& env) {
  const Model& model = trainer.model();
  const ParamStore& params = model.params();
  RankMemory m;
  StageMemory& h = m.held;
  h.stage = env.coords.pp;
  h.layers = model.layers();
  h.in_flight = model.in_flight();
  h.weights = params.values_bytes();
  h.grads = params.grads_bytes();
  h.compute_weights = params.weights_bytes();
  h.grad_shards = trainer.grad_sync().shard_bytes();
  h.optimizer = trainer.optimizer().state_bytes();
  h.activations = model.activations_arena_bytes();
  h.scratch = model.scratch_arena_bytes();
  h.expert_rows = model.expert_rows().capacity_bytes();
  h.workspace = trainer.workspace().capacity();
  m.scratch_peak = model.scratch_peak_bytes();
  m.expert_rows_planned = model.expert_rows().planned_bytes();
  m.batch = trainer.batch_arena_bytes();
  m.device_used = bound_gpu_memory_used();
  return m;
}

namespace {

nlohmann::json to_json(const RankMemory& m, const ParallelEnv& env) {
  const StageMemory& h = m.held;
  const RankCoords& c = env.coords;
  const bool cuda = m.device_used > 0;
  nlohmann::json layers = nlohmann::json::array();  // [begin, end) per model chunk
  for (const StageRange& chunk : h.layers) layers.push_back({chunk.begin, chunk.end});
  return {{"rank", c.rank},
          {"host", host_name()},
          {"coords",
           {{"tp", c.tp},
            {"cp", c.cp},
            {"dp", c.dp},
            {"pp", c.pp},
            {"etp", c.etp},
            {"ep", c.ep},
            {"edp", c.edp}}},
          {"layers", layers},
          {"in_flight", h.in_flight},
          {"bytes",
           {{"weights", h.weights},
            {"grads", h.grads},
            {"compute_weights", h.compute_weights},
            {"grad_shards", h.grad_shards},
            {"optimizer", h.optimizer},
            {"activations", h.activations},
            {"scratch", h.scratch},
            {"expert_rows", h.expert_rows},
            {"workspace", h.workspace},
            {"total", h.total()}}},
          {"scratch_peak", m.scratch_peak},
          {"expert_rows_planned", m.expert_rows_planned},
          {"batch", m.batch},
          {"device_used", cuda ? nlohmann::json(m.device_used) : nlohmann::json(nullptr)}};
}

}  // namespace

void write_memory_json(const std::string& run_dir, const Trainer& trainer, const ParallelEnv& env,
                       int64_t step) {
  const RankMemory mine = measure_memory(trainer, env);
  const std::vector<std::string> all = all_gather_strings(*env.world, to_json(mine, env).dump());
  if (env.world->rank() != 0) return;
  nlohmann::json doc = {{"step", step},
                        {"device", device_name(trainer.model().context().device)},
                        {"ranks", nlohmann::json::array()}};
  for (const std::string& rank : all) doc["ranks"].push_back(nlohmann::json::parse(rank));
  namespace fs = std::filesystem;
  const fs::path path = fs::path(run_dir) / "memory.json", tmp = path.string() + ".tmp";
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  {
    std::ofstream out(tmp);
    out << doc.dump(2) << "\n";
    if (!out.flush()) ec = std::make_error_code(std::errc::io_error);
  }
  if (!ec) fs::rename(tmp, path, ec);
  if (ec) log_warn("could not write {}: {}", path.string(), ec.message());
}

}  // namespace tmt
