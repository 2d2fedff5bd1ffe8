// Parsing and checking a recipe: YAML -> overrides -> the schema's reader (types, ranges,
// defaults) -> the rules between keys that need no world size.
#include "trainer/recipe/recipe.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>

#include "kernels/attention.h"
#include "trainer/recipe/embedded.h"
#include "trainer/recipe/reader.h"
#include "trainer/recipe/schema.h"

namespace tmt {

using recipe_detail::Section;
using recipe_detail::Sources;

namespace {

// The top-level sections, in schema order.
const std::vector<std::string>& sections() {
  static const std::vector<std::string> names = recipe_detail::key_names<Recipe>();
  return names;
}

// Applies `key.path=value` to the tree; records the flag as the origin of the key.
void apply_override(YAML::Node& root, const std::string& flag, Sources& sources) {
  const std::string shown = "--set " + flag;
  const size_t eq = flag.find('=');
  if (eq == std::string::npos) input_error("{}: expected key.path=value", shown);
  const std::string path = flag.substr(0, eq);
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string part; std::getline(ss, part, '.');) parts.push_back(part);
  if (path.empty() || path.back() == '.' ||
      std::find(parts.begin(), parts.end(), "") != parts.end()) {
    input_error("{}: '{}' is not a key path like section.key", shown, path);
  }
  if (parts.size() < 2) {
    const std::string near = recipe_detail::nearest_key(parts[0], sections());
    if (std::find(sections().begin(), sections().end(), parts[0]) == sections().end()) {
      input_error("{}: {}: unknown section{}", shown, parts[0],
                  near.empty() ? "" : fmt::format(" (did you mean {}?)", near));
    }
    input_error("{}: {} is a section; set one of its keys, e.g. {}.<key>=value", shown, path, path);
  }
  YAML::Node value;
  try {
    value = YAML::Load(flag.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    input_error("{}: {}: the value is not valid YAML: {}", shown, path, e.msg);
  }
  YAML::Node node = root;
  std::string prefix;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    prefix += (i ? "." : "") + parts[i];
    YAML::Node child = node[parts[i]];
    if (!child.IsDefined() || child.IsNull()) {
      node[parts[i]] = YAML::Node(YAML::NodeType::Map);
      child = node[parts[i]];
    } else if (!child.IsMap()) {
      input_error("{}: {} is a value, not a section", shown, prefix);
    }
    node.reset(child);
  }
  node[parts.back()] = value;
  sources.overrides[path] = shown;
}

YAML::Node parse_yaml(const std::string& text, const std::string& source) {
  try {
    return YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    input_error("{}:{}:{}: YAML syntax error: {}", source, e.mark.line + 1, e.mark.column + 1,
                e.msg);
  } catch (const YAML::Exception& e) {
    input_error("{}: YAML error: {}", source, e.msg);
  }
}

[[noreturn]] void fail(const Recipe& r, const std::string& key, const std::string& message) {
  recipe_error(r, key, message);
}

void check_mla(const Recipe& r) {
  const ModelConfig& m = r.model;
  if (!m.is_mla()) {
    if (m.mla) fail(r, "model.mla", "is for model.attention: mla (the recipe's is gqa)");
    return;
  }
  if (!m.mla) fail(r, "model.attention", "mla needs its sizes in model.mla");
  if (m.mla->qk_rope_head_dim % 2 != 0) {
    fail(r, "model.mla.qk_rope_head_dim",
         fmt::format("must be even for RoPE, got {}", m.mla->qk_rope_head_dim));
  }
  // MLA rotates exactly its qk_rope_head_dim part (transformers' Mistral4Config writes that as
  // partial_rotary_factor = qk_rope / (qk_nope + qk_rope); import turns it into the sizes).
  if (m.partial_rotary_factor != 1.0) {
    fail(r, "model.partial_rotary_factor",
         "must be 1 with attention: mla (its rotary part is model.mla.qk_rope_head_dim)");
  }
}

// A per-rank memory no machine has: the recipe's products (vocabulary x width, layers x experts x
// hidden sizes, micro-batch x sequence x width ...) are refused before anything is sized by them
// (an arena of that size, a loop over that many layers, an int64 product that wraps). What does
// fit a given device is `check --memory --hw`'s business (commands/check.cpp).
void check_size_bound(const Recipe& r) {
  const SizeBound b = size_bound(r);
  if (b.total() <= kMaxRankBytes) return;
  const bool by_params = b.params_bytes >= b.activation_bytes;
  const SizeBound::Blame& blame = by_params ? b.params_blame : b.activations_blame;
  constexpr double kTiB = 1ull << 40;
  fail(r, blame.key,
       fmt::format("{:.6g} makes one rank hold at least {:.3g} TiB ({:.3g} TiB of parameters and "
                   "their gradients, {:.3g} TiB of one micro-batch's activations), beyond any "
                   "machine's {:.0f} TiB",
                   blame.value, b.total() / kTiB, b.params_bytes / kTiB, b.activation_bytes / kTiB,
                   kMaxRankBytes / kTiB));
}

void check_model(const Recipe& r) {
  const ModelConfig& m = r.model;
  if (m.n_heads % m.n_kv_heads != 0) {
    fail(r, "model.n_kv_heads",
         fmt::format("{} does not divide model.n_heads = {}", m.n_kv_heads, m.n_heads));
  }
  if (!m.is_mla() && m.head_dim % 2 != 0)
    fail(r, "model.head_dim", fmt::format("must be even for RoPE, got {}", m.head_dim));
  check_mla(r);  // before the size bound, which reads the MLA sizes
  check_size_bound(r);
  if (!m.is_mla() && (m.rotary_dim() < 2 || m.rotary_dim() % 2 != 0)) {
    fail(r, "model.partial_rotary_factor",
         fmt::format("{} gives int({} · {}) = {} rotary dims; they must be even and at least 2",
                     m.partial_rotary_factor, m.head_dim, m.partial_rotary_factor, m.rotary_dim()));
  }
  if (m.has_dense_layers() && m.ffn_hidden < 1) {
    fail(r, "model.ffn_hidden",
         fmt::format("must be >= 1 (the model has dense layers), got {}", m.ffn_hidden));
  }
  const RopeScaling& rs = m.rope_scaling;
  if (rs.type == RopeScalingType::kYarn) {
    if (!(rs.factor > 1.0))
      fail(r, "model.rope_scaling.factor",
           fmt::format("yarn needs a factor > 1, got {}", rs.factor));
    if (rs.original_max_seq_len <= 0) {
      fail(r, "model.rope_scaling.original_max_seq_len",
           "yarn needs the original context length (> 0)");
    }
    if (!(rs.beta_fast > rs.beta_slow && rs.beta_slow > 0)) {
      fail(r, "model.rope_scaling.beta_fast",
           fmt::format("needs beta_fast > beta_slow > 0, got {} and {}", rs.beta_fast,
                       rs.beta_slow));
    }
    // transformers ignores mscale without mscale_all_dim; before it spoke its terms, tramontane
    // multiplied the attention factor by mscale. Either reading would surprise someone.
    if (rs.mscale && !rs.mscale_all_dim && !rs.attention_factor) {
      fail(r, "model.rope_scaling.mscale",
           "has no effect without model.rope_scaling.mscale_all_dim (transformers' rule: the "
           "attention factor is g(s, mscale) / g(s, mscale_all_dim)); give both, or "
           "attention_factor");
    }
  } else {
    for (const auto& [key, given] :
         {std::pair{"mscale", rs.mscale.has_value()},
          std::pair{"mscale_all_dim", rs.mscale_all_dim.has_value()},
          std::pair{"attention_factor", rs.attention_factor.has_value()}}) {
      if (given) {
        fail(r, std::string("model.rope_scaling.") + key,
             "is a yarn setting; model.rope_scaling.type is none");
      }
    }
  }
  if (rs.llama_4_beta > 0 && rs.llama_4_original_max_seq_len <= 0) {
    fail(r, "model.rope_scaling.llama_4_original_max_seq_len",
         "must be > 0 when model.rope_scaling.llama_4_beta is set (the length L4 in "
         "1 + beta·ln(1 + floor(pos / L4)))");
  }
  if (!m.moe) return;
  const MoeConfig& e = *m.moe;
  if (e.top_k > e.n_experts) {
    fail(r, "model.moe.top_k",
         fmt::format("must be in [1, n_experts = {}], got {}", e.n_experts, e.top_k));
  }
  if (e.n_experts % e.n_groups != 0 || (e.n_groups > 1 && e.n_experts / e.n_groups < 2)) {
    fail(r, "model.moe.n_groups",
         fmt::format("must divide n_experts = {} into groups of at least 2 experts, got {}",
                     e.n_experts, e.n_groups));
  } else if (e.topk_groups > e.n_groups) {
    fail(r, "model.moe.topk_groups",
         fmt::format("must be in [1, n_groups = {}], got {}", e.n_groups, e.topk_groups));
  } else if (e.top_k > e.topk_groups * (e.n_experts / e.n_groups)) {
    fail(r, "model.moe.top_k",
         fmt::format("{} is more than the {} experts of the topk_groups = {} eligible groups",
                     e.top_k, e.topk_groups * (e.n_experts / e.n_groups), e.topk_groups));
  }
  if (e.expert_bias() && e.score != RouterScore::kSigmoid) {
    fail(r, "model.moe.bias_update_rate",
         "the expert bias needs sigmoid scores (model.moe.score: sigmoid)");
  }
  if (e.first_dense_layers > m.n_layers) {
    fail(r, "model.moe.first_dense_layers",
         fmt::format("must be in [0, model.n_layers = {}], got {}", m.n_layers,
                     e.first_dense_layers));
  }
  if (!e.layer_pattern.empty()) {
    if (static_cast<int64_t>(e.layer_pattern.size()) != m.n_layers) {
      fail(r, "model.moe.layer_pattern",
           fmt::format("has {} entries for model.n_layers = {}", e.layer_pattern.size(),
                       m.n_layers));
    }
    if (r.given("model.moe.first_dense_layers"))
      fail(r, "model.moe.layer_pattern",
           "give either layer_pattern or first_dense_layers, not both");
  }
}

void check_data(const Recipe& r) {
  const DataConfig& d = r.data;
  if (d.seq_len > r.model.max_seq_len) {
    fail(r, "data.seq_len",
         fmt::format("{} is longer than model.max_seq_len = {}", d.seq_len, r.model.max_seq_len));
  }
  if (d.source == DataSourceKind::kShards) {
    if (d.paths.empty()) fail(r, "data.paths", "data.source is shards but no paths are given");
    for (const auto* list : {&d.paths, &d.val_paths}) {
      for (const auto& p : *list) {
        if (!std::filesystem::exists(p)) {
          fail(r, list == &d.paths ? "data.paths" : "data.val_paths",
               fmt::format("'{}' does not exist", p));
        }
      }
    }
  } else if (d.synthetic.branching > r.model.vocab_size) {
    fail(r, "data.synthetic.branching",
         fmt::format("must be in [1, model.vocab_size = {}], got {}", r.model.vocab_size,
                     d.synthetic.branching));
  }
}

// The CUDA attention kernels take head dims up to kCudaAttentionMaxHeadDim, for the queries and
// keys and for the values (they differ under MLA: Dqk = qk_nope + qk_rope).
void check_cuda_head_dims(const Recipe& r) {
  const ModelConfig& m = r.model;
  const auto too_large = [&](const std::string& key, int64_t dim, const char* what) {
    if (dim <= kCudaAttentionMaxHeadDim) return;
    fail(r, key,
         fmt::format("makes the attention's {} head dim {}, over the {} the CUDA kernels take "
                     "(train.device: cuda)",
                     what, dim, kCudaAttentionMaxHeadDim));
  };
  if (!m.is_mla()) return too_large("model.head_dim", m.head_dim, "query, key and value");
  too_large("model.mla.qk_nope_head_dim", m.mla->qk_nope_head_dim + m.mla->qk_rope_head_dim,
            "query and key (qk_nope_head_dim + qk_rope_head_dim)");
  too_large("model.mla.v_head_dim", m.mla->v_head_dim, "value");
}

// FP8 on cuda (kernels/cuda/fp8_linear.h): bf16 operands, the blockwise recipe, and every linear's
// per-rank N and K in whole 16-byte rows of e4m3 codes (the GEMM's TMA unit).
void check_cuda_fp8(const Recipe& r) {
  if (r.train.dtype != DType::kBF16) {
    fail(r, "train.dtype",
         "train.precision fp8 on cuda takes bf16 operands: set train.dtype: bf16");
  }
  if (r.fp8.recipe != Fp8Scaling::kBlockwise) {
    fail(r, "fp8.recipe",
         "the FP8 kernels on cuda are blockwise; tensorwise and mxfp8 run on the CPU only "
         "(mxfp8's GEMMs need Blackwell)");
  }
  const ModelConfig& m = r.model;
  const int64_t tp = std::max<int64_t>(1, r.parallel.tp),
                etp = std::max<int64_t>(1, r.parallel.etp);
  const auto whole_rows = [&](const std::string& key, int64_t dim, const char* what) {
    if (dim % 16 == 0) return;
    fail(r, key,
         fmt::format("makes {} {} on a rank, not a multiple of 16: the FP8 GEMMs on cuda take "
                     "whole 16-byte rows (train.precision: fp8)",
                     what, dim));
  };
  whole_rows("model.d_model", m.d_model, "the model width");
  if (m.is_mla()) {
    const MlaConfig& a = *m.mla;
    const int64_t heads = m.n_heads / tp;
    if (a.q_lora_rank > 0) whole_rows("model.mla.q_lora_rank", a.q_lora_rank, "the query latent");
    whole_rows("model.mla.qk_nope_head_dim", heads * (a.qk_nope_head_dim + a.qk_rope_head_dim),
               "the query projection's width");
    whole_rows("model.mla.kv_lora_rank", a.kv_lora_rank, "the key-value latent");
    whole_rows("model.mla.qk_rope_head_dim", a.kv_lora_rank + a.qk_rope_head_dim,
               "the latent projection's width (kv_lora_rank + qk_rope_head_dim)");
    whole_rows("model.mla.v_head_dim", heads * (a.qk_nope_head_dim + a.v_head_dim),
               "the key-value expansion's width");
    whole_rows("model.mla.v_head_dim", heads * a.v_head_dim, "the output projection's input");
  } else {
    const int64_t kv_heads = m.n_kv_heads % tp == 0 ? m.n_kv_heads / tp : 1;
    whole_rows("model.head_dim", m.n_heads / tp * m.head_dim, "the query projection's width");
    whole_rows("model.n_kv_heads", kv_heads * m.head_dim, "the key and value projections' width");
  }
  const bool dense_layers = !m.moe || m.moe->first_dense_layers > 0;
  if (dense_layers) whole_rows("model.ffn_hidden", m.ffn_hidden / tp, "the FFN's hidden width");
  if (m.moe) {
    whole_rows("model.moe.expert_ffn_hidden", m.moe->expert_ffn_hidden / etp,
               "an expert's hidden width");
    if (m.moe->n_shared_experts > 0) {
      whole_rows("model.moe.shared_expert_ffn_hidden",
                 m.moe->n_shared_experts * m.moe->shared_expert_ffn_hidden / tp,
                 "the shared experts' hidden width");
    }
  }
}

void check_training(const Recipe& r) {
  const TrainConfig& t = r.train;
  if (t.global_batch % t.micro_batch != 0) {
    fail(r, "train.global_batch",
         fmt::format("{} is not divisible by train.micro_batch = {}", t.global_batch,
                     t.micro_batch));
  }
  if (r.parallel.comm == CommKind::kNccl && t.device != Device::kCuda)
    fail(r, "parallel.comm",
         "nccl needs train.device: cuda (the CPU backend communicates over MPI)");
  if (t.dtype == DType::kBF16 && t.device != Device::kCuda) {
    fail(r, "train.dtype",
         "bf16 (mixed precision) needs train.device: cuda; the CPU backend trains in fp32");
  }
  if (t.precision == Precision::kFp8 && t.device == Device::kCuda) check_cuda_fp8(r);
  if (t.device == Device::kCuda) check_cuda_head_dims(r);
  if (r.schedule.min_lr > r.optimizer.lr) {
    fail(r, "schedule.min_lr",
         fmt::format("must be in [0, optimizer.lr = {}], got {}", r.optimizer.lr,
                     r.schedule.min_lr));
  }
  if (r.run.dir.empty()) fail(r, "run.dir", "must not be empty");
}

}  // namespace

namespace {

// One factor of a product: the key, its value, and the value Mixtral 8x7B gives it (the reference
// the most responsible key is measured against: the factor furthest above it).
struct Factor {
  const char* key;
  double value, reference;
};

SizeBound::Blame furthest_above_reference(const std::vector<Factor>& factors) {
  const Factor* worst = &factors.front();
  for (const Factor& f : factors) {
    if (f.value / f.reference > worst->value / worst->reference) worst = &f;
  }
  return {worst->key, worst->value};
}

}  // namespace

SizeBound size_bound(const Recipe& r) {
  const ModelConfig& m = r.model;
  const ParallelConfig& p = r.parallel;
  const auto d = static_cast<double>(m.d_model);
  const auto v = static_cast<double>(m.vocab_size);
  const auto tp = static_cast<double>(p.tp);
  // The fullest stage holds at least ceil(n_layers / pp) layers.
  const double layers = std::ceil(static_cast<double>(m.n_layers) / static_cast<double>(p.pp));
  std::vector<Factor> factors = {{"model.vocab_size", v, 32000},
                                 {"model.d_model", d, 4096},
                                 {"model.n_layers", static_cast<double>(m.n_layers), 32},
                                 {"model.n_heads", static_cast<double>(m.n_heads), 32}};
  double attention = 0;       // per layer, this rank's share
  if (m.is_mla() && m.mla) {  // (a recipe without the sizes is refused before it is bounded)
    const MlaConfig& a = *m.mla;
    const auto h = static_cast<double>(m.n_heads) / tp;
    const auto qk = static_cast<double>(a.qk_nope_head_dim + a.qk_rope_head_dim);
    const auto q_lora = static_cast<double>(a.q_lora_rank);
    const auto kv_lora = static_cast<double>(a.kv_lora_rank);
    attention = (q_lora > 0 ? d * q_lora + q_lora * h * qk : d * h * qk) +
                d * (kv_lora + static_cast<double>(a.qk_rope_head_dim)) +
                kv_lora * h * static_cast<double>(a.qk_nope_head_dim + a.v_head_dim) +
                h * static_cast<double>(a.v_head_dim) * d;
    factors.push_back({"model.mla.kv_lora_rank", kv_lora, 512});
    factors.push_back({"model.mla.q_lora_rank", std::max(q_lora, 1.0), 1536});
  } else {
    const auto hd = static_cast<double>(m.head_dim);
    attention = d * hd * static_cast<double>(2 * m.n_heads + 2 * m.n_kv_heads) / tp;
    factors.push_back({"model.head_dim", hd, 128});
  }
  // With both layer kinds, the fullest stage holds one of the heavier and the rest of the lighter.
  double ffn = 3 * d * static_cast<double>(m.ffn_hidden) / tp, heavier = ffn;
  if (m.moe) {
    const MoeConfig& e = *m.moe;
    const double experts = static_cast<double>(e.n_experts) / static_cast<double>(p.ep) * 3 * d *
                               static_cast<double>(e.expert_ffn_hidden) /
                               static_cast<double>(p.etp) +
                           static_cast<double>(e.n_shared_experts) * 3 * d *
                               static_cast<double>(e.shared_expert_ffn_hidden) / tp;
    const bool dense_too = m.has_dense_layers();
    heavier = dense_too ? std::max(ffn, experts) : experts;
    ffn = dense_too ? std::min(ffn, experts) : experts;
    factors.push_back({"model.moe.n_experts", static_cast<double>(e.n_experts), 8});
    factors.push_back(
        {"model.moe.expert_ffn_hidden", static_cast<double>(e.expert_ffn_hidden), 14336});
  }
  if (m.has_dense_layers())
    factors.push_back({"model.ffn_hidden", static_cast<double>(m.ffn_hidden), 14336});
  SizeBound b;
  // fp32 values and gradients
  b.params_bytes = 8 * (v * d / tp + layers * (attention + ffn) + (heavier - ffn));
  b.params_blame = furthest_above_reference(factors);
  // One micro-batch's residual stream into and through each layer (x, x_mid) and its logits, in
  // fp32 (on the CPU; bf16 halves them on a GPU, but its master copies add more than that back).
  const double tokens =
      static_cast<double>(r.train.micro_batch) * static_cast<double>(r.data.seq_len);
  b.activation_bytes = 4 * (tokens / tp * d * layers * 2 + tokens * v / tp);
  factors.push_back({"train.micro_batch", static_cast<double>(r.train.micro_batch), 1});
  factors.push_back({"data.seq_len", static_cast<double>(r.data.seq_len), 4096});
  b.activations_blame = furthest_above_reference(factors);
  return b;
}

void recipe_error(const Recipe& r, const std::string& key, const std::string& message) {
  input_error("{}: {}: {}", r.origin_of(key), key, message);
}

bool ModelConfig::is_moe_layer(int64_t i) const {
  if (!moe) return false;
  if (!moe->layer_pattern.empty()) {
    // A pattern of the wrong length is refused by check_model; until then, no layer beyond it.
    return static_cast<size_t>(i) < moe->layer_pattern.size() &&
           moe->layer_pattern[static_cast<size_t>(i)] == LayerKind::kMoe;
  }
  return i >= moe->first_dense_layers;
}

bool ModelConfig::has_dense_layers() const {
  if (!moe) return n_layers > 0;
  const std::vector<LayerKind>& pattern = moe->layer_pattern;
  if (pattern.empty()) return std::min(moe->first_dense_layers, n_layers) > 0;
  // is_moe_layer's reading: layers beyond a (too short) pattern are dense.
  return static_cast<int64_t>(pattern.size()) < n_layers ||
         std::any_of(pattern.begin(), pattern.begin() + n_layers,
                     [](LayerKind k) { return k != LayerKind::kMoe; });
}

int64_t ModelConfig::rotary_dim() const {
  if (is_mla()) return mla->qk_rope_head_dim;
  return static_cast<int64_t>(static_cast<double>(head_dim) * partial_rotary_factor);
}

RopeParams ModelConfig::rope_params() const {
  const RopeScaling& rs = rope_scaling;
  return {.head_dim = rope_head_dim(),
          .rotary_dim = rotary_dim(),
          .theta = rope_theta,
          .scaling = rs.type,
          .factor = rs.factor,
          .original_max_seq_len = rs.original_max_seq_len,
          .beta_fast = rs.beta_fast,
          .beta_slow = rs.beta_slow,
          .mscale = rs.mscale.value_or(0.0),
          .mscale_all_dim = rs.mscale_all_dim.value_or(0.0),
          .attention_factor = rs.attention_factor.value_or(0.0),
          .truncate = rs.truncate};
}

std::string Recipe::origin_of(const std::string& key) const {
  for (std::string k = key;;) {
    if (auto it = origins.find(k); it != origins.end()) return it->second;
    const size_t dot = k.rfind('.');
    if (dot == std::string::npos) return source;
    k = k.substr(0, dot);
  }
}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  if (path.empty())
    return parse_recipe(std::string(embedded_default_recipe()), std::string(kEmbeddedRecipeName),
                        overrides);
  std::ifstream in(path);
  if (!in) input_error("{}: cannot read the recipe: {}", path, std::strerror(errno));
  if (std::filesystem::is_directory(path))
    input_error("{}: is a directory, not a recipe file", path);
  std::stringstream text;
  text << in.rdbuf();
  return parse_recipe(text.str(), path, overrides);
}

Recipe parse_recipe(const std::string& text, const std::string& source,
                    const std::vector<std::string>& overrides) {
  Recipe r;
  r.source = source;
  Sources sources;
  sources.file = source;
  sources.origins = &r.origins;
  YAML::Node root = parse_yaml(text, source);
  if (!root.IsDefined() || root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap())
    input_error("{}:1:1: a recipe is a mapping of sections ({})", source,
                fmt::join(sections(), ", "));
  for (const auto& flag : overrides) apply_override(root, flag, sources);

  recipe_detail::Reader reader(sources, root, r);
  recipe_detail::visit(reader, r);
  reader.finish();
  check_model(r);
  check_data(r);
  check_training(r);
  return r;
}

}  // namespace tmt
