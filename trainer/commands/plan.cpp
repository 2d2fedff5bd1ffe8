// `tramontane plan RECIPE --gpus N --hw KIND`: the recipe resolved for N ranks and estimated on
// that hardware (trainer/plan/step_estimate.h) — memory, communication, step time — without
// running anything.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "trainer/commands/commands.h"
#include "trainer/model/model_stats.h"
#include "trainer/plan/step_estimate.h"
#include "trainer/recipe/recipe.h"

namespace tmt {
namespace {

double gb(double bytes) { return bytes / 1e9; }
double gib(double bytes) { return bytes / (1024.0 * 1024.0 * 1024.0); }

void print_estimate(const Recipe& r, const Hardware& hw, const StepEstimate& e,
                    const PlanAssumptions& a) {
  const ParallelConfig& p = r.parallel;
  fmt::print("# {} on {} x {} ({} per NVLink domain)\n", r.source, e.gpus, hw.description,
             e.nvlink_domain);
  fmt::print("layout: tp {} x dp {} x pp {} (dense); etp {} x ep {} x edp {} (experts); zero1 {}\n",
             p.tp, p.dp, p.pp, p.etp, p.ep, p.edp, p.zero1 ? "on" : "off");
  fmt::print("step: {:.0f} tokens, {} micro-batch(es) of {} per data-parallel rank\n",
             e.tokens_per_step, e.micro_batches, r.train.micro_batch);

  fmt::print("\nmemory per rank, GiB (the trainer's arenas as memory_plan sizes them, bf16):\n");
  fmt::print("{:>5} {:>8} {:>7} {:>6} {:>6} {:>9} {:>11} {:>7} {:>7} {:>7}\n", "stage", "weights",
             "grads", "bf16", "shards", "optimizer", "activations", "scratch", "experts", "total");
  for (const StageMemory& m : e.memory) {
    fmt::print(
        "{:>5} {:>8.2f} {:>7.2f} {:>6.2f} {:>6.2f} {:>9.2f} {:>11.2f} {:>7.2f} {:>7.2f} "
        "{:>7.2f}\n",
        m.stage, gib(m.weights), gib(m.grads), gib(m.compute_weights), gib(m.grad_shards),
        gib(m.optimizer), gib(m.activations), gib(m.scratch), gib(m.expert_rows), gib(m.total()));
  }
  fmt::print("peak {:.1f} GiB + {:.0f} GiB reserve (CUDA context, NCCL) of {:.1f} GiB: {}\n",
             gib(static_cast<double>(e.peak_bytes)), a.reserve_gib, hw.memory_gib,
             e.fits ? "fits" : "DOES NOT FIT");

  fmt::print("\ncommunication per rank and step:\n");
  fmt::print("{:<6} {:>6} {:>10} {:<8} {:>9}\n", "group", "ranks", "GB sent", "link", "seconds");
  for (const GroupTraffic& g : e.traffic) {
    fmt::print("{:<6} {:>6} {:>10.3f} {:<8} {:>9.4f}\n", g.group, g.size, gb(g.bytes),
               g.nvlink ? "nvlink" : "network", g.seconds);
  }
  if (e.traffic.empty()) fmt::print("(none: one rank)\n");

  fmt::print(
      "\nstep time, seconds (nothing overlapped: the trainer does not overlap "
      "communication yet):\n");
  fmt::print(
      "  compute {:.4f} (at {:.0f}% of {:.0f} TFLOP/s)  bubble {:.4f}  optimizer {:.4f}  "
      "communication {:.4f}  total {:.4f}\n",
      e.compute_s, 100 * a.matmul_efficiency, hw.bf16_tflops, e.bubble_s, e.optimizer_s,
      e.step_s - e.compute_s - e.bubble_s - e.optimizer_s, e.step_s);
  if (e.recompute_flops_per_token > 0) {
    fmt::print(
        "  (compute includes train.recompute={}'s {} FLOPs per token, {:.1f}% above the model's)\n",
        name_of(r.train.recompute), human_count(e.recompute_flops_per_token),
        100 * e.recompute_flops_per_token / e.flops_per_token);
  }
  fmt::print("tokens/s {:.0f}   TFLOP/s per GPU {:.0f}   MFU {:.1f}%\n", e.tokens_per_s,
             e.tflops_per_gpu, 100 * e.mfu);
}

nlohmann::json to_json(const Recipe& r, const Hardware& hw, const StepEstimate& e) {
  const ParallelConfig& p = r.parallel;
  nlohmann::json j = {{"recipe", r.source},
                      {"gpus", e.gpus},
                      {"hw", hw.name},
                      {"nvlink_domain", e.nvlink_domain},
                      {"layout",
                       {{"tp", p.tp},
                        {"dp", p.dp},
                        {"pp", p.pp},
                        {"etp", p.etp},
                        {"ep", p.ep},
                        {"edp", p.edp},
                        {"zero1", p.zero1}}},
                      {"micro_batches", e.micro_batches},
                      {"tokens_per_step", e.tokens_per_step},
                      {"flops_per_token", e.flops_per_token},
                      {"recompute", name_of(r.train.recompute)},
                      {"recompute_flops_per_token", e.recompute_flops_per_token},
                      {"seconds",
                       {{"compute", e.compute_s},
                        {"bubble", e.bubble_s},
                        {"optimizer", e.optimizer_s},
                        {"step", e.step_s}}},
                      {"tokens_per_s", e.tokens_per_s},
                      {"tflops_per_gpu", e.tflops_per_gpu},
                      {"mfu", e.mfu},
                      {"peak_bytes", e.peak_bytes},
                      {"fits", e.fits}};
  j["communication"] = nlohmann::json::array();
  for (const GroupTraffic& g : e.traffic) {
    j["communication"].push_back({{"group", g.group},
                                  {"ranks", g.size},
                                  {"bytes", g.bytes},
                                  {"link", g.nvlink ? "nvlink" : "network"},
                                  {"seconds", g.seconds}});
  }
  j["memory_per_rank"] = nlohmann::json::array();
  for (const StageMemory& m : e.memory) {
    j["memory_per_rank"].push_back({{"stage", m.stage},
                                    {"weights", m.weights},
                                    {"grads", m.grads},
                                    {"compute_weights", m.compute_weights},
                                    {"grad_shards", m.grad_shards},
                                    {"optimizer", m.optimizer},
                                    {"activations", m.activations},
                                    {"scratch", m.scratch},
                                    {"expert_rows", m.expert_rows},
                                    {"total", m.total()}});
  }
  return j;
}

}  // namespace

int run_plan(const PlanOptions& options) {
  const Hardware& hw = hardware(options.hw);
  Recipe recipe = load_recipe(options.recipe, options.overrides);
  resolve_layout(recipe, options.gpus);
  const PlanAssumptions a{.nvlink_domain = options.nvlink_domain};
  const StepEstimate e = estimate_step(recipe, hw, a);
  if (options.json) {
    fmt::print("{}\n", to_json(recipe, hw, e).dump(1));
  } else {
    print_estimate(recipe, hw, e, a);
  }
  return 0;
}

}  // namespace tmt
