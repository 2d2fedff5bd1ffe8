// `tramontane plan RECIPE --gpus N --hw KIND`: the recipe resolved for N ranks and estimated on
// that hardware (trainer/plan/step_estimate.h) — memory, communication, step time — without
// running anything.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "kernels/base/check.h"
#include "trainer/commands/commands.h"
#include "trainer/model/model_stats.h"
#include "trainer/plan/search.h"
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
  fmt::print(
      "layout: tp {}{} x dp {} x pp {}{} (dense); etp {} x ep {} x edp {} (experts); zero1 {}\n",
      p.tp, p.cp > 1 ? fmt::format(" x cp {}", p.cp) : "", p.dp, p.pp,
      p.vpp > 1 ? fmt::format(" (vpp {}: interleaved)", p.vpp) : "", p.etp, p.ep, p.edp,
      p.zero1 ? "on" : "off");
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

  fmt::print("\nstep time, seconds ({}):\n",
             a.overlap ? "--overlap: communication hidden behind compute, the longer of the two"
                       : "nothing overlapped: the trainer does not overlap communication yet");
  fmt::print(
      "  compute {:.4f} (at {:.0f}% of {} TFLOP/s)  bubble {:.4f}  optimizer {:.4f}  "
      "communication {:.4f}  total {:.4f}\n",
      e.compute_s, 100 * a.matmul_efficiency,
      a.fp8_gemms ? fmt::format("{:.0f} fp8 (GEMMs) / {:.0f} bf16", hw.fp8_tflops, hw.bf16_tflops)
                  : fmt::format("{:.0f} bf16", hw.bf16_tflops),
      e.bubble_s, e.optimizer_s, e.communication_s, e.step_s);
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
                      {"precision", e.fp8_gemms ? "fp8" : "bf16"},
                      {"overlap", e.overlap},
                      {"layout",
                       {{"tp", p.tp},
                        {"cp", p.cp},
                        {"dp", p.dp},
                        {"pp", p.pp},
                        {"vpp", p.vpp},
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
                        {"communication", e.communication_s},
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

// The layout keys of a candidate (search.h), as a table row.
std::string layout_row(const Recipe& r) {
  const ParallelConfig& p = r.parallel;
  return fmt::format("{:>3} {:>3} {:>3} {:>3} {:>4} {:>3} {:>3} {:>4} {:<5} {:>5} {:<9}", p.tp,
                     p.cp, p.pp, p.vpp, p.dp, p.ep, p.etp, p.edp, p.zero1 ? "on" : "off",
                     r.train.micro_batch, name_of(r.train.recompute));
}

int run_search(const PlanOptions& options, const Hardware& hw, const PlanAssumptions& a) {
  const Recipe base = load_recipe(options.recipe, options.overrides);
  const RecipeMaker make = [&](const std::vector<std::string>& sets) {
    std::vector<std::string> all = options.overrides;
    all.insert(all.end(), sets.begin(), sets.end());
    Recipe r = load_recipe(options.recipe, all);
    resolve_layout(r, options.gpus);
    return r;
  };
  const LayoutSearch s = search_layouts(base, make, options.gpus, hw, a, options.top);
  if (options.json) {
    nlohmann::json j = {{"recipe", base.source}, {"gpus", options.gpus},
                        {"hw", hw.name},         {"considered", s.considered},
                        {"refused", s.refused},  {"too_large", s.too_large}};
    j["ranked"] = nlohmann::json::array();
    for (const LayoutCandidate& c : s.ranked) {
      nlohmann::json e = to_json(c.recipe, hw, c.estimate);
      e["micro_batch"] = c.recipe.train.micro_batch;
      e["sets"] = c.sets;
      j["ranked"].push_back(e);
    }
    fmt::print("{}\n", j.dump(1));
    return 0;
  }
  fmt::print(
      "# {} on {} x {}: {} layouts considered, {} refused by the recipe's rules, {} sized "
      "and over the {:.1f} GiB (+{:.0f} GiB reserve)\n",
      base.source, options.gpus, hw.description, s.considered, s.refused, s.too_large,
      hw.memory_gib, a.reserve_gib);
  if (s.ranked.empty()) {
    fmt::print("no layout fits\n");
    return 0;
  }
  fmt::print(
      "{:>6} {:>3} {:>3} {:>3} {:>3} {:>4} {:>3} {:>3} {:>4} {:<5} {:>5} {:<9} {:>8} {:>8} {:>7} "
      "{:>7} {:>7} {:>10} {:>7} {:>6}\n",
      "rank", "tp", "cp", "pp", "vpp", "dp", "ep", "etp", "edp", "zero1", "micro", "recompute",
      "peak GiB", "compute", "bubble", "comm", "step s", "tokens/s", "TFLOP/s", "MFU");
  const auto row = [&](const std::string& label, const Recipe& r, const StepEstimate& e) {
    fmt::print(
        "{:>6} {} {:>8.1f} {:>8.3f} {:>7.3f} {:>7.3f} {:>7.3f} {:>10.0f} {:>7.0f} {:>5.1f}%\n",
        label, layout_row(r), gib(static_cast<double>(e.peak_bytes)), e.compute_s, e.bubble_s,
        e.communication_s, e.step_s, e.tokens_per_s, e.tflops_per_gpu, 100 * e.mfu);
  };
  int rank = 0;
  for (const LayoutCandidate& c : s.ranked) row(fmt::format("{}", ++rank), c.recipe, c.estimate);
  // The recipe's own layout beside them, when it is one for these GPUs.
  try {
    Recipe own = load_recipe(options.recipe, options.overrides);
    resolve_layout(own, options.gpus);
    const StepEstimate e = estimate_step(own, hw, a);
    row("recipe", own, e);
    if (!e.fits) fmt::print("(the recipe's own layout does not fit)\n");
  } catch (const InputError& e) {
    fmt::print("(the recipe's own layout is not one for {} GPUs: {})\n", options.gpus, e.what());
  }
  fmt::print(
      "(seconds per step: compute at {:.0f}% of peak, the 1F1B bubble (pp-1)/(vpp·m), every "
      "group's "
      "communication, {}; docs/PLANNING.md)\n",
      100 * a.matmul_efficiency,
      a.overlap ? "hidden behind compute (--overlap)" : "nothing overlapped");
  fmt::print("(plan RECIPE --gpus {} --hw {} --set ... with a row's keys shows its details)\n",
             options.gpus, hw.name);
  return 0;
}

}  // namespace

int run_plan(const PlanOptions& options) {
  const Hardware& hw = hardware(options.hw);
  const PlanAssumptions a{.fp8_gemms = options.precision == "fp8",
                          .overlap = options.overlap,
                          .nvlink_domain = options.nvlink_domain};
  if (options.search) return run_search(options, hw, a);
  Recipe recipe = load_recipe(options.recipe, options.overrides);
  resolve_layout(recipe, options.gpus);
  const StepEstimate e = estimate_step(recipe, hw, a);
  if (options.json) {
    fmt::print("{}\n", to_json(recipe, hw, e).dump(1));
  } else {
    print_estimate(recipe, hw, e, a);
  }
  return 0;
}

}  // namespace tmt
