// The rules that tie the recipe to the world size: the dense grid tp x cp x dp x pp, the expert
// grid etp x ep x edp, and what each split requires of the model and the batch.
#include <fmt/format.h>

#include "kernels/base/check.h"
#include "trainer/recipe/recipe.h"

namespace tmt {
namespace {

[[noreturn]] void fail(const Recipe& r, const std::string& key, const std::string& message) {
  recipe_error(r, key, message);
}

bool given(const Recipe& r, const std::string& key) { return r.given(key); }

// A rule between two keys blames the first, unless only the second was set by a --set flag: then
// the flag is what the user just changed, and the error names it.
bool set_by_flag(const Recipe& r, const std::string& key) {
  return r.origin_of(key).rfind("--set", 0) == 0;
}

}  // namespace

Layout layout_of(const ParallelConfig& p) {
  return {.tp = p.tp, .dp = p.dp, .pp = p.pp, .etp = p.etp, .ep = p.ep, .edp = p.edp, .cp = p.cp};
}

int64_t required_world(const Recipe& r) {
  if (!given(r, "parallel.dp")) return 0;
  return r.parallel.tp * r.parallel.cp * r.parallel.dp * r.parallel.pp;
}

void resolve_layout(Recipe& r, int64_t world) {
  ParallelConfig& p = r.parallel;
  const ModelConfig& m = r.model;
  if (world < 1) input_error("the world size must be >= 1, got {}", world);
  const int64_t tp_cp_pp = p.tp * p.cp * p.pp;
  const std::string cp_term = p.cp > 1 ? fmt::format(" x cp {}", p.cp) : "";
  if (given(r, "parallel.dp")) {
    if (tp_cp_pp * p.dp != world) {
      fail(r, "parallel.dp",
           fmt::format("tp {}{} x dp {} x pp {} = {} ranks, but the world has {}", p.tp, cp_term,
                       p.dp, p.pp, tp_cp_pp * p.dp, world));
    }
  } else {
    if (world % tp_cp_pp != 0) {
      fail(r, "parallel",
           fmt::format("tp {}{} x pp {} = {} does not divide the world size {}{}", p.tp, cp_term,
                       p.pp, tp_cp_pp, world,
                       world == 1 ? fmt::format(" (launch {} ranks: scripts/train.sh or mpirun -n "
                                                "{}; or set parallel.tp and parallel.pp to 1)",
                                                tp_cp_pp, tp_cp_pp)
                                  : ""));
    }
    p.dp = world / tp_cp_pp;
  }
  // Tensor parallelism splits heads, the vocabulary and the FFN.
  if (m.n_heads % p.tp != 0)
    fail(r, "parallel.tp", fmt::format("{} does not divide model.n_heads = {}", p.tp, m.n_heads));
  if (m.n_kv_heads % p.tp != 0 && p.tp % m.n_kv_heads != 0) {
    fail(r, "parallel.tp",
         fmt::format("{} and model.n_kv_heads = {} must divide one another (kv heads are split, or "
                     "replicated when tp > n_kv_heads)",
                     p.tp, m.n_kv_heads));
  }
  if (m.vocab_size % p.tp != 0) {
    fail(r, "parallel.tp",
         fmt::format("{} does not divide model.vocab_size = {} (the embedding and head are split "
                     "by vocabulary)",
                     p.tp, m.vocab_size));
  }
  if (m.ffn_hidden % p.tp != 0)
    fail(r, "parallel.tp",
         fmt::format("{} does not divide model.ffn_hidden = {}", p.tp, m.ffn_hidden));
  if (p.tp > 1 && r.data.seq_len % p.tp != 0) {
    fail(r, "data.seq_len",
         fmt::format("{} is not divisible by parallel.tp = {} (sequence parallelism splits the "
                     "sequence)",
                     r.data.seq_len, p.tp));
  }
  if (given(r, "parallel.sequence_parallel") && p.tp > 1 && !p.sequence_parallel) {
    fail(r, "parallel.sequence_parallel",
         "must be true when tp > 1 (MoE token routing needs the sequence split)");
  }
  p.sequence_parallel = p.tp > 1;
  // Pipeline parallelism splits layers.
  if (m.moe && m.moe->n_shared_experts > 0 &&
      (m.moe->n_shared_experts * m.moe->shared_expert_ffn_hidden) % p.tp != 0) {
    fail(r, "parallel.tp",
         fmt::format("{} does not divide the shared experts' hidden size {} x {}", p.tp,
                     m.moe->n_shared_experts, m.moe->shared_expert_ffn_hidden));
  }
  if (p.pp > 1 && m.tie_embeddings) {
    fail(
        r, "parallel.pp",
        fmt::format("{} stages with model.tie_embeddings: the tied embedding and head would sit on "
                    "different stages, which this version does not support (untie them or use "
                    "pp 1)",
                    p.pp));
  }
  if (p.pp > m.n_layers)
    fail(r, "parallel.pp", fmt::format("{} stages for model.n_layers = {}", p.pp, m.n_layers));
  if (p.vpp > 1 && p.pp == 1) {
    fail(r, "parallel.vpp",
         fmt::format("{} model chunks per stage need a pipeline (parallel.pp > 1)", p.vpp));
  }
  if (p.pp * p.vpp > m.n_layers) {
    fail(r, "parallel.vpp",
         fmt::format("{} chunks per stage x parallel.pp {} = {} virtual stages for model.n_layers "
                     "= {}",
                     p.vpp, p.pp, p.pp * p.vpp, m.n_layers));
  }
  if (!p.pp_layers.empty()) {
    if (static_cast<int64_t>(p.pp_layers.size()) != p.pp * p.vpp) {
      fail(r, "parallel.pp_layers",
           p.vpp == 1 ? fmt::format("has {} entries for parallel.pp = {}", p.pp_layers.size(), p.pp)
                      : fmt::format("has {} entries for parallel.pp {} x parallel.vpp {} = {} "
                                    "virtual stages",
                                    p.pp_layers.size(), p.pp, p.vpp, p.pp * p.vpp));
    }
    int64_t sum = 0;
    for (int64_t n : p.pp_layers) {
      if (n < 1)
        fail(r, "parallel.pp_layers", fmt::format("every stage needs >= 1 layer, got {}", n));
      sum += n;
    }
    if (sum != m.n_layers) {
      fail(r, "parallel.pp_layers",
           fmt::format("sums to {}, not model.n_layers = {}", sum, m.n_layers));
    }
  }
  // Expert parallelism folds the tp x dp ranks of a stage into etp x ep x edp.
  if (!m.moe) {
    if (p.ep != 1)
      fail(r, "parallel.ep", fmt::format("is {} but the model has no experts (model.moe)", p.ep));
    if (p.etp != 1)
      fail(r, "parallel.etp", fmt::format("is {} but the model has no experts (model.moe)", p.etp));
  } else {
    if (m.moe->n_experts % p.ep != 0) {
      if (set_by_flag(r, "parallel.ep") && !set_by_flag(r, "model.moe.n_experts")) {
        fail(r, "parallel.ep",
             fmt::format("{} does not divide model.moe.n_experts = {}", p.ep, m.moe->n_experts));
      }
      fail(r, "model.moe.n_experts",
           fmt::format("{} is not divisible by parallel.ep = {}", m.moe->n_experts, p.ep));
    }
    if (m.moe->expert_ffn_hidden % p.etp != 0) {
      fail(r, "parallel.etp",
           fmt::format("{} does not divide model.moe.expert_ffn_hidden = {}", p.etp,
                       m.moe->expert_ffn_hidden));
    }
  }
  // Context parallelism cuts each sequence into 2·cp chunks, each split over TP.
  if (p.cp > 1 && r.data.seq_len % (2 * p.cp * p.tp) != 0) {
    fail(r, "data.seq_len",
         fmt::format("{} is not divisible by 2 x parallel.cp {} x parallel.tp {} (context "
                     "parallelism splits each sequence into 2·cp chunks, sequence parallelism "
                     "each rank's tokens over tp)",
                     r.data.seq_len, p.cp, p.tp));
  }
  const int64_t stage_ranks = p.tp * p.cp * p.dp;
  if (stage_ranks % (p.etp * p.ep) != 0) {
    fail(r, "parallel.ep",
         fmt::format(
             "etp {} x ep {} = {} does not divide tp {}{} x dp {} = {}, the ranks of a pipeline "
             "stage",
             p.etp, p.ep, p.etp * p.ep, p.tp, cp_term, p.dp, stage_ranks));
  }
  p.edp = stage_ranks / (p.etp * p.ep);
  if (r.train.global_batch % (r.train.micro_batch * p.dp) != 0) {
    fail(r, "train.global_batch",
         fmt::format("{} is not divisible by train.micro_batch {} x parallel.dp {}",
                     r.train.global_batch, r.train.micro_batch, p.dp));
  }
  // Interleaved 1F1B runs the micro-batches in groups of pp per chunk (pipeline/schedule.h).
  const int64_t micro_batches = r.train.global_batch / (r.train.micro_batch * p.dp);
  if (p.vpp > 1 && micro_batches % p.pp != 0) {
    fail(r, "train.global_batch",
         fmt::format("{} makes {} micro-batches per data-parallel rank (/ train.micro_batch {} / "
                     "parallel.dp {}), not a multiple of parallel.pp = {} as interleaved 1F1B "
                     "(parallel.vpp = {}) needs",
                     r.train.global_batch, micro_batches, r.train.micro_batch, p.dp, p.pp, p.vpp));
  }
}

}  // namespace tmt
