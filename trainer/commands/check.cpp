// `tramontane check RECIPE --world N`: the recipe resolved for N ranks, its size and cost, and
// where every rank sits — or the first error, without training.
#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "parallel/topology.h"
#include "trainer/commands/commands.h"
#include "trainer/memory_plan.h"
#include "trainer/model/model_stats.h"
#include "trainer/pipeline/stages.h"
#include "trainer/plan/hardware.h"
#include "trainer/plan/step_estimate.h"
#include "trainer/recipe/recipe.h"

namespace tmt {
namespace {

void print_rank_map(const Recipe& r) {
  const Layout l = layout_of(r.parallel);
  const int64_t experts_per_rank = r.model.moe ? r.model.moe->n_experts / r.parallel.ep : 0;
  fmt::print(
      "\nrank map (dense grid tp x cp x dp x pp, expert grid etp x ep x edp within each "
      "stage):\n");
  fmt::print("{:>6} {:>4} {:>4} {:>4} {:>4} {:>5} {:>4} {:>5}  {:<13} {}\n", "rank", "tp", "cp",
             "dp", "pp", "etp", "ep", "edp", "layers", "experts");
  for (int64_t rank = 0; rank < l.world(); ++rank) {
    const RankCoords c = coords_of(l, rank);
    const std::string layers = layer_ranges(
        stage_chunks(r.model.n_layers, r.parallel.pp, r.parallel.vpp, r.parallel.pp_layers, c.pp));
    std::string experts = "-";
    if (experts_per_rank > 0) {
      const int64_t first = c.ep * experts_per_rank;
      experts = experts_per_rank == 1 ? fmt::format("{}", first)
                                      : fmt::format("{}-{}", first, first + experts_per_rank - 1);
    }
    fmt::print("{:>6} {:>4} {:>4} {:>4} {:>4} {:>5} {:>4} {:>5}  {:<13} {}\n", rank, c.tp, c.cp,
               c.dp, c.pp, c.etp, c.ep, c.edp, layers, experts);
  }
}

double gib(size_t bytes) { return static_cast<double>(bytes) / static_cast<double>(1ull << 30); }

void print_memory(const std::vector<StageMemory>& stages) {
  fmt::print(
      "\nmemory per rank, GiB (sized by the allocating code, nothing allocated; the expert rows "
      "as planned for the balanced load, trainer/model/expert_rows.h):\n");
  fmt::print("{:>5} {:<9} {:>8} {:>7} {:>6} {:>6} {:>6} {:>9} {:>11} {:>7} {:>7} {:>9} {:>7}\n",
             "stage", "layers", "in-flight", "weights", "grads", "bf16", "shards", "optimizer",
             "activations", "scratch", "experts", "workspace", "total");
  for (const StageMemory& m : stages) {
    fmt::print(
        "{:>5} {:<9} {:>8} {:>7.2f} {:>6.2f} {:>6.2f} {:>6.2f} {:>9.2f} {:>11.2f} {:>7.2f} "
        "{:>7.2f} {:>9.2f} {:>7.2f}\n",
        m.stage, layer_ranges(m.layers), m.in_flight, gib(m.weights), gib(m.grads),
        gib(m.compute_weights), gib(m.grad_shards), gib(m.optimizer), gib(m.activations),
        gib(m.scratch), gib(m.expert_rows), gib(m.workspace), gib(m.total()));
  }
  if (!stages.empty() && !stages.front().workspace_known) {
    fmt::print(
        "(workspace: not known without a GPU, counted 0; cuDNN's attention sizes it once it has "
        "built its graphs)\n");
  }
}

// The fullest stage against `hw`'s memory less plan's reserve: an error naming the key that
// most reduces the largest part when it does not fit (experts: parallel.ep; the rest of the
// parameters: parallel.pp, or parallel.tp when pp is already one stage a layer; optimizer state:
// parallel.zero1 when off; activations: train.micro_batch above 1, else data.seq_len), or
// parallel.zero1 first when turning it on alone makes the stage fit.
void check_fits(const Recipe& r, const std::vector<StageMemory>& stages, const Hardware& hw) {
  const StageMemory& m = *std::max_element(
      stages.begin(), stages.end(),
      [](const StageMemory& a, const StageMemory& b) { return a.total() < b.total(); });
  const double reserve = PlanAssumptions{}.reserve_gib;
  const double need = gib(m.total());
  if (need + reserve <= hw.memory_gib) return;
  const size_t params = m.weights + m.grads + m.compute_weights;
  const size_t optimizer = m.optimizer + m.grad_shards;
  const size_t activations = m.activations + m.scratch + m.expert_rows;
  std::string key, what;
  // ZeRO-1 off and enough on its own: it shards the AdamW state over dp (and adds grad shards).
  const auto dp = static_cast<double>(r.parallel.dp);
  const double zero1_saves = gib(m.optimizer) * (1.0 - 1.0 / dp) - gib(m.grads) / dp;
  if (!r.parallel.zero1 && r.parallel.dp > 1 && zero1_saves >= need + reserve - hw.memory_gib) {
    key = "parallel.zero1";
    what = fmt::format(
        "ZeRO-1 would shard its AdamW state ({:.1f} GiB) over dp {} and save {:.1f} GiB",
        gib(optimizer), r.parallel.dp, zero1_saves);
  } else if (activations >= params && activations >= optimizer) {
    key = r.train.micro_batch > 1 ? "train.micro_batch" : "data.seq_len";
    what = fmt::format("most of it is activations of {} micro-batches in flight ({:.1f} GiB)",
                       m.in_flight, gib(activations));
  } else if (optimizer >= params) {
    key = r.parallel.zero1 ? "parallel.pp" : "parallel.zero1";
    what = fmt::format("most of it is AdamW state{} ({:.1f} GiB)",
                       r.parallel.zero1 ? "" : " unsharded", gib(optimizer));
  } else if (2 * m.expert_params >= params) {
    key = "parallel.ep";
    what = fmt::format("most of it is the routed experts' weights and gradients ({:.1f} GiB)",
                       gib(m.expert_params));
  } else {
    key = r.parallel.pp < r.model.n_layers ? "parallel.pp" : "parallel.tp";
    what = fmt::format("most of it is weights and gradients ({:.1f} GiB, {:.1f} GiB of them dense)",
                       gib(params), gib(params - m.expert_params));
  }
  recipe_error(
      r, key,
      fmt::format("stage {} (layers {}) needs {:.1f} GiB a rank + {:.0f} GiB reserve, "
                  "over the {:.1f} GiB of an {} (--hw); {}",
                  m.stage, layer_ranges(m.layers), need, reserve, hw.memory_gib, hw.name, what));
}

}  // namespace

int run_check(const CheckOptions& options) {
  if (options.schema) {
    fmt::print("{}", options.markdown ? schema_markdown() : schema_text());
    return 0;
  }
  Recipe recipe = load_recipe(options.recipe, options.overrides);
  if (options.print_world) {
    // What a launcher needs: the ranks of the recipe's layout (dp defaulting to 1), checked in full
    // so that a bad layout fails here, before any rank starts.
    const int64_t fixed = required_world(recipe);
    const int64_t world = fixed > 0 ? fixed : recipe.parallel.tp * recipe.parallel.pp;
    resolve_layout(recipe, world);
    fmt::print("{}\n", world);
    return 0;
  }
  int64_t world = options.world;
  if (world == 0) {
    world = required_world(recipe);
    if (world == 0) world = recipe.parallel.tp * recipe.parallel.pp;
  }
  resolve_layout(recipe, world);

  std::vector<StageMemory> memory;
  if (options.memory || !options.hw.empty()) memory = plan_memory(recipe);
  if (!options.hw.empty()) check_fits(recipe, memory, hardware(options.hw));

  const ModelConfig& m = recipe.model;
  const ParallelConfig& p = recipe.parallel;
  const ModelStats s = model_stats(m, recipe.data.seq_len);
  if (options.json) {
    nlohmann::json j;
    j["recipe"] = recipe.source;
    j["world"] = world;
    j["total_params"] = s.total_params;
    j["active_params"] = s.active_params;
    j["embedding_params"] = s.embedding_params;
    j["flops_per_token"] = s.flops_per_token();
    j["attention"] = name_of(m.attention);
    j["kv_cache_bytes_per_token"] = {{"bf16", 2 * s.kv_cache_values_per_token},
                                     {"fp32", 4 * s.kv_cache_values_per_token}};
    j["gqa_kv_cache_bytes_per_token"] = {{"bf16", 2 * s.gqa_kv_cache_values_per_token},
                                         {"fp32", 4 * s.gqa_kv_cache_values_per_token}};
    j["tokens_per_step"] = recipe.train.global_batch * recipe.data.seq_len;
    j["layout"] = {{"tp", p.tp},   {"dp", p.dp}, {"pp", p.pp},
                   {"etp", p.etp}, {"ep", p.ep}, {"edp", p.edp}};
    if (options.memory) {
      for (const StageMemory& mem : memory) {
        j["memory_per_rank"].push_back({{"stage", mem.stage},
                                        {"weights", mem.weights},
                                        {"grads", mem.grads},
                                        {"compute_weights", mem.compute_weights},
                                        {"grad_shards", mem.grad_shards},
                                        {"optimizer", mem.optimizer},
                                        {"activations", mem.activations},
                                        {"scratch", mem.scratch},
                                        {"expert_rows", mem.expert_rows},
                                        {"workspace", mem.workspace},
                                        {"total", mem.total()}});
      }
    }
    fmt::print("{}\n", j.dump(1));
    return 0;
  }
  fmt::print("# {} resolved for {} rank{}\n", recipe.source, world, world == 1 ? "" : "s");
  fmt::print("{}", to_yaml(recipe));
  fmt::print("\nmodel: {} layers ({} dense, {} MoE), d_model {}, ", m.n_layers, s.dense_layers,
             s.moe_layers, m.d_model);
  if (m.is_mla()) {
    const MlaConfig& a = *m.mla;
    fmt::print("{} latent-attention heads (q latent {}, kv latent {}, q/k {} + {} RoPE, v {})",
               m.n_heads, a.q_lora_rank, a.kv_lora_rank, a.qk_nope_head_dim, a.qk_rope_head_dim,
               a.v_head_dim);
  } else {
    fmt::print("{} heads / {} kv heads of {}", m.n_heads, m.n_kv_heads, m.head_dim);
  }
  if (m.moe) fmt::print(", {} experts top-{}", m.moe->n_experts, m.moe->top_k);
  fmt::print("\nparameters: {} total, {} active per token ({} in the input embedding)\n",
             human_count(static_cast<double>(s.total_params)),
             human_count(static_cast<double>(s.active_params)),
             human_count(static_cast<double>(s.embedding_params)));
  fmt::print("training FLOPs per token at seq_len {}: {} ({} matmul + {} attention)\n",
             recipe.data.seq_len, human_count(s.flops_per_token()),
             human_count(s.matmul_flops_per_token), human_count(s.attention_flops_per_token));
  fmt::print("KV cache per token (inference): {} bytes in bf16 ({} values over {} layers, {})\n",
             2 * s.kv_cache_values_per_token, s.kv_cache_values_per_token, m.n_layers,
             m.is_mla() ? "the kv latent and the shared RoPE key" : "k and v");
  if (m.is_mla()) {
    const MlaConfig& a = *m.mla;
    fmt::print(
        "  grouped-query attention with the same heads would cache {} bytes in bf16 ({} kv heads "
        "of k {} + v {} over {} layers), {:.1f}x as much\n",
        2 * s.gqa_kv_cache_values_per_token, m.n_kv_heads, a.qk_nope_head_dim + a.qk_rope_head_dim,
        a.v_head_dim, m.n_layers,
        static_cast<double>(s.gqa_kv_cache_values_per_token) /
            static_cast<double>(s.kv_cache_values_per_token));
  }
  fmt::print(
      "tokens per step: {} ({} sequences x {}), {} micro-batches of {} per data-parallel rank\n",
      recipe.train.global_batch * recipe.data.seq_len, recipe.train.global_batch,
      recipe.data.seq_len, recipe.train.global_batch / (recipe.train.micro_batch * p.dp),
      recipe.train.micro_batch);
  fmt::print(
      "layout: tp {}{} x dp {} x pp {}{} (dense); etp {} x ep {} x edp {} (experts); "
      "sequence parallel {}; zero1 {}\n",
      p.tp, p.cp > 1 ? fmt::format(" x cp {}", p.cp) : "", p.dp, p.pp,
      p.vpp > 1 ? fmt::format(" (vpp {})", p.vpp) : "", p.etp, p.ep, p.edp,
      p.sequence_parallel ? "on" : "off", p.zero1 ? "on" : "off");
  if (options.memory) print_memory(memory);
  if (!options.hw.empty()) {
    fmt::print(
        "fits an {}: the fullest rank {:.1f} GiB + {:.0f} GiB reserve of {:.1f} GiB\n", options.hw,
        gib(std::max_element(
                memory.begin(), memory.end(),
                [](const StageMemory& a, const StageMemory& b) { return a.total() < b.total(); })
                ->total()),
        PlanAssumptions{}.reserve_gib, hardware(options.hw).memory_gib);
  }
  print_rank_map(recipe);
  return 0;
}

}  // namespace tmt
