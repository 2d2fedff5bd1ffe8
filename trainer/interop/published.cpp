#include "trainer/interop/published.h"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <optional>

#include "kernels/base/check.h"

namespace tmt {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_json_file(const fs::path& path) {
  std::ifstream in(path);
  if (!in) input_error("{}: cannot open", path.string());
  try {
    json j = json::parse(in);
    if (!j.is_object()) input_error("{}: not a JSON object", path.string());
    return j;
  } catch (const json::exception& e) {
    input_error("{}: not valid JSON: {}", path.string(), e.what());
  }
}

// A key of a config file, checked: `key` missing (and required), or of the wrong type, is one
// error naming the file and the key.
class ConfigReader {
 public:
  ConfigReader(const json& j, const fs::path& file) : j_(j), file_(file) {}

  int64_t integer(const std::string& key, std::optional<int64_t> fallback = std::nullopt) const {
    const json* v = find(key, fallback.has_value());
    if (v == nullptr) return *fallback;
    if (!v->is_number_integer() || v->get<int64_t>() <= 0)
      bad(key, fmt::format("expected a positive integer, got {}", v->dump()));
    return v->get<int64_t>();
  }
  // A non-negative integer (a count that may be 0).
  int64_t count(const std::string& key, int64_t fallback) const {
    const json* v = find(key, true);
    if (v == nullptr) return fallback;
    if (!v->is_number_integer() || v->get<int64_t>() < 0)
      bad(key, fmt::format("expected an integer >= 0, got {}", v->dump()));
    return v->get<int64_t>();
  }
  double number(const std::string& key, std::optional<double> fallback = std::nullopt) const {
    const json* v = find(key, fallback.has_value());
    if (v == nullptr) return *fallback;
    if (!v->is_number() || v->get<double>() <= 0)
      bad(key, fmt::format("expected a positive number, got {}", v->dump()));
    return v->get<double>();
  }
  bool boolean(const std::string& key, bool fallback) const {
    const json* v = find(key, true);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) bad(key, fmt::format("expected true or false, got {}", v->dump()));
    return v->get<bool>();
  }
  // Absent or null -> nullopt.
  std::optional<int64_t> optional_integer(const std::string& key) const {
    const json* v = find(key, true);
    if (v == nullptr) return std::nullopt;
    return integer(key);
  }
  std::string string(const std::string& key, const std::string& fallback) const {
    const json* v = find(key, true);
    if (v == nullptr) return fallback;
    if (!v->is_string()) bad(key, fmt::format("expected a string, got {}", v->dump()));
    return v->get<std::string>();
  }
  const json* find(const std::string& key, bool optional) const {
    const auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) {
      if (!optional) input_error("{}: {}: missing", file_.string(), key);
      return nullptr;
    }
    return &*it;
  }
  [[noreturn]] void bad(const std::string& key, const std::string& what) const {
    input_error("{}: {}: {}", file_.string(), key, what);
  }
  const fs::path& file() const { return file_; }

 private:
  const json& j_;
  const fs::path& file_;
};

// RoPE: transformers 5's `rope_parameters` (rope_theta inside) or transformers 4's `rope_scaling`
// (rope_theta at the top), types default and yarn, read as transformers does (its defaults, and
// mscale counting only beside mscale_all_dim); Llama 4's llama_4_scaling_beta (required by
// Ministral 3, optional for Mistral 4), whose length is original_max_position_embeddings. The
// latent-attention classes rotate qk_rope_head_dim dims of a head: Mistral 4 writes that as
// partial_rotary_factor = qk_rope / (qk_nope + qk_rope), and their softmax takes mscale_all_dim
// alone (yarn_apply_mscale). Anything else is refused, naming the key.
void read_hf_rope(const ConfigReader& c, const std::string& arch, double theta_fallback,
                  ModelConfig& m) {
  const bool ministral3 = arch == "Ministral3ForCausalLM", mistral4 = arch == "Mistral4ForCausalLM";
  const char* key = c.find("rope_parameters", true) != nullptr ? "rope_parameters" : "rope_scaling";
  const json* rp = c.find(key, true);
  m.rope_theta = c.number("rope_theta", theta_fallback);
  // The fraction of a head that rotates: all of it, or MLA's rope part of Mistral 4's head.
  const double rotary =
      mistral4 ? static_cast<double>(m.mla->qk_rope_head_dim) /
                     static_cast<double>(m.mla->qk_nope_head_dim + m.mla->qk_rope_head_dim)
               : 1.0;
  const auto check_rotary = [&](const ConfigReader& r) {
    if (r.find("partial_rotary_factor", true) != nullptr &&
        std::fabs(r.number("partial_rotary_factor") - rotary) > 1e-12 * rotary) {
      r.bad("partial_rotary_factor",
            mistral4 ? fmt::format("expected qk_rope_head_dim / (qk_nope_head_dim + "
                                   "qk_rope_head_dim) = {}, the latent attention's rope part",
                                   rotary)
                     : std::string("this class rotates every dim of a head"));
    }
  };
  check_rotary(c);
  if (rp == nullptr) {
    if (ministral3) c.bad("rope_parameters", "missing (Ministral 3 needs llama_4_scaling_beta)");
    return;
  }
  if (!rp->is_object()) c.bad(key, fmt::format("expected an object, got {}", rp->dump()));
  const fs::path where = fmt::format("{}: {}", c.file().string(), key);
  const ConfigReader r(*rp, where);
  m.rope_theta = r.number("rope_theta", m.rope_theta);
  const std::string type = r.string("rope_type", r.string("type", "default"));
  check_rotary(r);
  RopeScaling& rs = m.rope_scaling;
  const int64_t original = c.integer("original_max_position_embeddings",
                                     r.integer("original_max_position_embeddings", m.max_seq_len));
  if (type == "yarn") {
    rs.type = RopeScalingType::kYarn;
    rs.original_max_seq_len = original;
    rs.factor = r.number("factor", static_cast<double>(m.max_seq_len) /
                                       static_cast<double>(rs.original_max_seq_len));
    // transformers: `get("beta_fast") or 32`, and mscale only with mscale_all_dim (0 = absent).
    const auto given = [&](const char* k) -> std::optional<double> {
      const json* v = r.find(k, true);
      if (v == nullptr || (v->is_number() && v->get<double>() == 0.0)) return std::nullopt;
      return r.number(k);
    };
    rs.beta_fast = given("beta_fast").value_or(32.0);
    rs.beta_slow = given("beta_slow").value_or(1.0);
    rs.attention_factor = given("attention_factor");
    if (given("mscale") && given("mscale_all_dim")) rs.mscale = given("mscale");
    if (rs.mscale || m.is_mla()) rs.mscale_all_dim = given("mscale_all_dim");
    rs.truncate = r.boolean("truncate", true);
  } else if (type != "default") {
    r.bad("rope_type", fmt::format("'{}' is not supported (default and yarn are)", type));
  }
  if (ministral3 || (mistral4 && r.find("llama_4_scaling_beta", true) != nullptr)) {
    const json* beta = r.find("llama_4_scaling_beta", false);
    if (!beta->is_number() || beta->get<double>() < 0)
      r.bad("llama_4_scaling_beta", fmt::format("expected a number >= 0, got {}", beta->dump()));
    rs.llama_4_beta = beta->get<double>();
    rs.llama_4_original_max_seq_len = original;
  }
}

// The latent attention and DeepSeek-V3's MoE of DeepseekV3ForCausalLM and Mistral4ForCausalLM:
// the first first_k_dense_replace layers dense (intermediate_size), the others n_routed_experts of
// moe_intermediate_size plus n_shared_experts as one FFN, routed by sigmoid with
// e_score_correction_bias (DeepSeek-V3) or by softmax (Mistral 4), both group-limited.
void read_hf_mla(const ConfigReader& c, bool deepseek, ModelConfig& m) {
  MlaConfig a;
  a.q_lora_rank = c.optional_integer("q_lora_rank").value_or(0);
  a.kv_lora_rank = c.integer("kv_lora_rank");
  a.qk_nope_head_dim = c.integer("qk_nope_head_dim");
  a.qk_rope_head_dim = c.integer("qk_rope_head_dim");
  a.v_head_dim = c.integer("v_head_dim");
  m.attention = AttentionKind::kMla;
  m.mla = a;
  m.head_dim = a.qk_nope_head_dim + a.qk_rope_head_dim;
  if (m.n_kv_heads != m.n_heads)
    c.bad("num_key_value_heads", "the latent attention has a key and value per query head");
  if (c.boolean("attention_bias", false)) c.bad("attention_bias", "tramontane has no biases");
  m.rope_interleaved = c.boolean("rope_interleave", true);
  if (!c.boolean("norm_topk_prob", true))
    c.bad("norm_topk_prob", "tramontane renormalizes the routed weights over the top k");
  MoeConfig e;
  e.n_experts = c.integer("n_routed_experts");
  e.top_k = c.integer("num_experts_per_tok");
  e.expert_ffn_hidden = c.integer("moe_intermediate_size");
  e.shared_expert_ffn_hidden = e.expert_ffn_hidden;
  e.n_shared_experts = c.count("n_shared_experts", 0);
  e.first_dense_layers = c.count("first_k_dense_replace", 0);
  if (e.first_dense_layers == 0) m.ffn_hidden = 0;  // no dense layer: the recipe's derived 0
  e.n_groups = c.integer("n_group", 1);
  e.topk_groups = c.integer("topk_group", 1);
  e.routed_scaling_factor = c.number("routed_scaling_factor", 1.0);
  e.score = deepseek ? RouterScore::kSigmoid : RouterScore::kSoftmax;
  // transformers trains neither with an auxiliary loss. DeepSeek-V3's balance is its expert bias
  // (updated at the paper's rate, 0.001) and the sequence-wise loss (the paper's 0.0001).
  e.aux_loss_coeff = 0.0;
  e.z_loss_coeff = 0.0;
  e.bias_update_rate = deepseek ? 0.001 : 0.0;
  e.seq_aux_loss_coeff = deepseek ? 0.0001 : 0.0;
  m.moe = e;
}

// quantization_config of an FP8 checkpoint (DeepSeek-V3's, transformers' FineGrainedFP8):
// quant_method fp8, fmt e4m3, a weight_scale_inv per weight_block_size block.
void read_hf_fp8(const ConfigReader& c, const fs::path& file, PublishedConfig& out) {
  const json* q = c.find("quantization_config", true);
  if (q == nullptr || q->is_null()) return;
  if (!q->is_object()) c.bad("quantization_config", "expected an object");
  const ConfigReader r(*q, fmt::format("{}: quantization_config", file.string()));
  if (const std::string method = r.string("quant_method", ""); method != "fp8")
    r.bad("quant_method", fmt::format("'{}': import reads fp8 (e4m3) weights only", method));
  if (const std::string f = r.string("fmt", "e4m3"); f != "e4m3")
    r.bad("fmt", fmt::format("'{}': import reads e4m3 weights only", f));
  out.fp8 = true;
  if (const json* b = r.find("weight_block_size", true); b != nullptr && !b->is_null()) {
    if (!b->is_array() || b->size() != 2 || !(*b)[0].is_number_integer() ||
        !(*b)[1].is_number_integer() || (*b)[0].get<int64_t>() <= 0 || (*b)[1].get<int64_t>() <= 0)
      r.bad("weight_block_size", fmt::format("expected [rows, cols], got {}", b->dump()));
    out.fp8_block = {(*b)[0].get<int64_t>(), (*b)[1].get<int64_t>()};
  }
}

PublishedConfig read_hf_config(const fs::path& file) {
  const json j = read_json_file(file);
  const ConfigReader c(j, file);
  PublishedConfig out;
  out.format = PublishedFormat::kHuggingFace;
  out.file = file;
  const json* arch = c.find("architectures", false);
  if (!arch->is_array() || arch->size() != 1 || !(*arch)[0].is_string())
    c.bad("architectures", fmt::format("expected one class name, got {}", arch->dump()));
  out.architecture = (*arch)[0].get<std::string>();
  const bool moe = out.architecture == "MixtralForCausalLM";
  const bool ministral3 = out.architecture == "Ministral3ForCausalLM";
  const bool deepseek = out.architecture == "DeepseekV3ForCausalLM";
  const bool mla = deepseek || out.architecture == "Mistral4ForCausalLM";
  if (!moe && !ministral3 && !mla && out.architecture != "MistralForCausalLM") {
    c.bad("architectures", fmt::format("{} is not supported (tramontane imports "
                                       "MixtralForCausalLM, MistralForCausalLM, "
                                       "Ministral3ForCausalLM, DeepseekV3ForCausalLM and "
                                       "Mistral4ForCausalLM)",
                                       out.architecture));
  }
  if (const std::string act = c.string("hidden_act", "silu"); act != "silu")
    c.bad("hidden_act", fmt::format("'{}': tramontane's FFN is SwiGLU (silu)", act));
  read_hf_fp8(c, file, out);
  ModelConfig& m = out.model;
  m.vocab_size = c.integer("vocab_size");
  m.d_model = c.integer("hidden_size");
  m.n_layers = c.integer("num_hidden_layers");
  m.n_heads = c.integer("num_attention_heads");
  m.n_kv_heads = c.integer("num_key_value_heads", m.n_heads);
  m.head_dim = c.integer("head_dim", m.d_model / m.n_heads);
  m.ffn_hidden = c.integer("intermediate_size");
  m.norm_eps = c.number("rms_norm_eps", 1e-6);
  m.max_seq_len = c.integer("max_position_embeddings", ministral3 ? 262144 : 32768);
  if (mla) read_hf_mla(c, deepseek, m);
  read_hf_rope(c, out.architecture, moe || ministral3 ? 1e6 : 1e4, m);
  if (!mla) m.sliding_window = c.optional_integer("sliding_window");
  m.tie_embeddings = c.boolean("tie_word_embeddings", false);
  m.init_std = c.number("initializer_range", 0.02);
  if (moe) {
    MoeConfig e;
    e.n_experts = c.integer("num_local_experts");
    e.top_k = c.integer("num_experts_per_tok");
    e.expert_ffn_hidden = m.ffn_hidden;
    e.shared_expert_ffn_hidden = m.ffn_hidden;  // unused: no shared experts
    e.aux_loss_coeff = c.find("router_aux_loss_coef", true) != nullptr
                           ? c.find("router_aux_loss_coef", true)->get<double>()
                           : 0.02;
    e.z_loss_coeff = 0.0;
    m.moe = e;
  }
  return out;
}

// Mistral Large 3's params.json (the keys vLLM's Mistral config adapter reads): the latent
// attention's sizes at the top level, moe {num_experts, num_experts_per_tok, expert_hidden_dim,
// first_k_dense_replace, num_shared_experts, routed_scale, num_expert_groups,
// num_expert_groups_per_tok, route_every_n} routed by softmax and renormalized, yarn {factor,
// original_max_position_embeddings, beta (beta_fast), alpha (beta_slow), apply_scale} with an
// mscale_all_dim of 1, llama_4_scaling {original_max_position_embeddings, beta}. Its RoPE turns
// interleaved pairs in the tensors as they are (DeepSeek-V3's layout): rope_interleaved, no rows
// permuted.
void read_mistral_mla(const ConfigReader& c, ModelConfig& m) {
  MlaConfig a;
  a.q_lora_rank = c.optional_integer("q_lora_rank").value_or(0);
  a.kv_lora_rank = c.integer("kv_lora_rank");
  a.qk_nope_head_dim = c.integer("qk_nope_head_dim");
  a.qk_rope_head_dim = c.integer("qk_rope_head_dim");
  a.v_head_dim = c.integer("v_head_dim");
  m.attention = AttentionKind::kMla;
  m.mla = a;
  m.head_dim = a.qk_nope_head_dim + a.qk_rope_head_dim;
  m.n_kv_heads = m.n_heads;
  m.rope_interleaved = true;
  m.sliding_window.reset();
  if (c.find("sliding_window", true) != nullptr)
    c.bad("sliding_window", "the latent attention attends to every position here");
  m.max_seq_len = c.integer("max_position_embeddings", m.max_seq_len);
  const auto object = [&](const char* key) -> const json* {
    const json* v = c.find(key, true);
    if (v != nullptr && !v->is_object())
      c.bad(key, fmt::format("expected an object, got {}", v->dump()));
    return v;
  };
  const fs::path& file = c.file();
  if (const json* y = object("yarn")) {
    const fs::path where = fmt::format("{}: yarn", file.string());
    const ConfigReader r(*y, where);
    RopeScaling& rs = m.rope_scaling;
    rs.type = RopeScalingType::kYarn;
    rs.factor = r.number("factor");
    rs.original_max_seq_len = r.integer("original_max_position_embeddings");
    rs.beta_fast = r.number("beta", 32.0);
    rs.beta_slow = r.number("alpha", 1.0);
    rs.mscale_all_dim = 1.0;
    if (!r.boolean("apply_scale", true)) rs.attention_factor = 1.0;
  }
  if (const json* l4 = object("llama_4_scaling")) {
    const fs::path where = fmt::format("{}: llama_4_scaling", file.string());
    const ConfigReader r(*l4, where);
    m.rope_scaling.llama_4_beta = r.number("beta");
    m.rope_scaling.llama_4_original_max_seq_len = r.integer("original_max_position_embeddings");
  }
  const json* moe = object("moe");
  if (moe == nullptr) c.bad("moe", "missing (import reads the latent attention with MoE)");
  const fs::path where = fmt::format("{}: moe", file.string());
  const ConfigReader r(*moe, where);
  MoeConfig e;
  e.n_experts = r.integer("num_experts");
  e.top_k = r.integer("num_experts_per_tok");
  e.expert_ffn_hidden = r.integer("expert_hidden_dim");
  e.shared_expert_ffn_hidden = e.expert_ffn_hidden;
  e.n_shared_experts = r.count("num_shared_experts", 0);
  e.first_dense_layers = r.count("first_k_dense_replace", 0);
  if (e.first_dense_layers == 0) m.ffn_hidden = 0;
  e.routed_scaling_factor = r.number("routed_scale", 1.0);
  e.n_groups = r.integer("num_expert_groups", 1);
  e.topk_groups = r.integer("num_expert_groups_per_tok", 1);
  if (r.integer("route_every_n", 1) != 1)
    r.bad("route_every_n", "tramontane routes every layer after the dense ones");
  if (r.boolean("use_load_balancing_bias", false))
    r.bad("use_load_balancing_bias", "a softmax router with an expert bias is not imported");
  e.score = RouterScore::kSoftmax;
  e.aux_loss_coeff = 0.0;
  e.z_loss_coeff = 0.0;
  m.moe = e;
}

PublishedConfig read_mistral_params(const fs::path& file) {
  const json j = read_json_file(file);
  const ConfigReader c(j, file);
  PublishedConfig out;
  out.format = PublishedFormat::kMistral;
  out.file = file;
  out.architecture = "Mistral params.json";
  ModelConfig& m = out.model;
  m.vocab_size = c.integer("vocab_size");
  m.d_model = c.integer("dim");
  m.n_layers = c.integer("n_layers");
  m.n_heads = c.integer("n_heads");
  m.n_kv_heads = c.integer("n_kv_heads", m.n_heads);
  m.head_dim = c.integer("head_dim", m.d_model / m.n_heads);
  m.ffn_hidden = c.integer("hidden_dim");
  m.norm_eps = c.number("norm_eps", 1e-5);
  m.rope_theta = c.number("rope_theta", 1e4);
  m.max_seq_len = c.integer("max_seq_len", 32768);
  m.sliding_window = c.optional_integer("sliding_window");
  m.tie_embeddings = c.boolean("tied_embeddings", false);
  const bool mla = c.find("qk_nope_head_dim", true) != nullptr;
  if (!mla) {
    for (const char* unsupported : {"yarn", "rope_scaling", "llama_4_scaling", "kv_lora_rank"}) {
      if (c.find(unsupported, true) != nullptr)
        c.bad(unsupported, "imported with the latent attention (qk_nope_head_dim) only");
    }
  }
  if (const json* q = c.find("quantization", true)) {
    if (!q->is_object()) c.bad("quantization", "expected an object");
    const fs::path where = fmt::format("{}: quantization", file.string());
    const ConfigReader r(*q, where);
    if (const std::string f = r.string("qformat_weight", ""); f != "fp8_e4m3")
      r.bad("qformat_weight", fmt::format("'{}': import reads fp8_e4m3 weights only", f));
    out.fp8 = true;
    if (const json* b = r.find("weight_block_size", true)) {
      if (!b->is_array() || b->size() != 2 || !(*b)[0].is_number_integer() ||
          !(*b)[1].is_number_integer() || (*b)[0].get<int64_t>() <= 0 ||
          (*b)[1].get<int64_t>() <= 0)
        r.bad("weight_block_size", fmt::format("expected [rows, cols], got {}", b->dump()));
      out.fp8_block = {(*b)[0].get<int64_t>(), (*b)[1].get<int64_t>()};
    }
  }
  if (mla) {
    read_mistral_mla(c, m);
    return out;
  }
  if (const json* moe = c.find("moe", true)) {
    if (!moe->is_object()) c.bad("moe", "expected an object");
    const ConfigReader e(*moe, file);
    MoeConfig cfg;
    cfg.n_experts = e.integer("num_experts");
    cfg.top_k = e.integer("num_experts_per_tok");
    cfg.expert_ffn_hidden = m.ffn_hidden;
    cfg.shared_expert_ffn_hidden = m.ffn_hidden;  // unused: no shared experts
    cfg.aux_loss_coeff = 0.02;
    cfg.z_loss_coeff = 0.0;
    m.moe = cfg;
  }
  return out;
}

}  // namespace

std::string fp8_scale_name(PublishedFormat format, const std::string& weight) {
  if (format == PublishedFormat::kHuggingFace) return weight + "_scale_inv";
  return weight.substr(0, weight.size() - std::string(".weight").size()) + ".qscale_weight";
}

bool fp8_exported(const TensorMapping& m) {
  if (m.shape.size() != 2 || !m.published.ends_with(".weight")) return false;
  for (const char* kept : {"embedding", "head", ".moe.router", "norm"}) {
    if (m.param.find(kept) != std::string::npos) return false;
  }
  return true;
}

PublishedConfig read_published_config(const fs::path& dir) {
  if (!fs::is_directory(dir)) input_error("{}: not a directory", dir.string());
  if (fs::exists(dir / "config.json")) return read_hf_config(dir / "config.json");
  if (fs::exists(dir / "params.json")) return read_mistral_params(dir / "params.json");
  input_error(
      "{}: neither config.json (a Hugging Face model) nor params.json (Mistral's format) is there",
      dir.string());
}

std::vector<TensorMapping> tensor_mappings(const ModelConfig& m, PublishedFormat format) {
  const bool hf = format == PublishedFormat::kHuggingFace;
  const int64_t d = m.d_model, dh = m.head_dim, v = m.vocab_size;
  std::vector<TensorMapping> out;
  const auto add_tensor = [&](std::string param, std::string published, std::vector<int64_t> shape,
                              std::vector<int64_t> offset = {}, int64_t heads = 0,
                              std::vector<int64_t> block = {}) {
    if (offset.empty()) offset.assign(block.empty() ? shape.size() : block.size(), 0);
    out.push_back({std::move(param), std::move(published), std::move(shape), std::move(offset),
                   heads, std::move(block)});
  };
  const auto add = [&](std::string param, const std::string& published, std::vector<int64_t> shape,
                       std::vector<int64_t> offset = {}, int64_t heads = 0) {
    add_tensor(std::move(param), published + ".weight", std::move(shape), std::move(offset), heads);
  };
  // DeepSeek-V3's names (Mistral 4's too): the latent attention, mlp.gate with the expert bias,
  // the routed experts (one tensor per expert and projection as DeepseekV3ForCausalLM saves them,
  // or Mistral 4's fused [E, 2F, D] and [E, D, F]), mlp.shared_experts.
  const auto add_mla = [&](const std::string& ours, const std::string& attn) {
    const MlaConfig& a = *m.mla;
    const int64_t h = m.n_heads, dqk = a.qk_nope_head_dim + a.qk_rope_head_dim;
    if (a.q_lora_rank > 0) {
      add(ours + "attn.wq_a", attn + (hf ? "q_a_proj" : "wq_a"), {a.q_lora_rank, d});
      add(ours + "attn.q_a_norm", attn + (hf ? "q_a_layernorm" : "q_a_norm"), {a.q_lora_rank});
      add(ours + "attn.wq_b", attn + (hf ? "q_b_proj" : "wq_b"), {h * dqk, a.q_lora_rank});
    } else {
      add(ours + "attn.wq", attn + (hf ? "q_proj" : "wq"), {h * dqk, d});
    }
    add(ours + "attn.wkv_a", attn + (hf ? "kv_a_proj_with_mqa" : "wkv_a_with_mqa"),
        {a.kv_lora_rank + a.qk_rope_head_dim, d});
    add(ours + "attn.kv_a_norm", attn + (hf ? "kv_a_layernorm" : "kv_a_norm"), {a.kv_lora_rank});
    add(ours + "attn.wkv_b", attn + (hf ? "kv_b_proj" : "wkv_b"),
        {h * (a.qk_nope_head_dim + a.v_head_dim), a.kv_lora_rank});
    add(ours + "attn.wo", attn + (hf ? "o_proj" : "wo"), {d, h * a.v_head_dim});
  };
  // Mistral Large 3's own names: layers.L.gate, layers.L.experts.X.w{1,2,3},
  // layers.L.shared_experts.w{1,2,3}.
  const auto add_mistral_moe = [&](const std::string& ours) {
    const MoeConfig& e = *m.moe;
    const int64_t f = e.expert_ffn_hidden;
    add(ours + "moe.router", ours + "gate", {e.n_experts, d});
    for (int64_t x = 0; x < e.n_experts; ++x) {
      const std::string p = fmt::format("{}experts.{}.", ours, x);
      add(ours + "moe.w13", p + "w1", {f, d}, {x, 0, 0, 0});
      add(ours + "moe.w2", p + "w2", {d, f}, {x, 0, 0});
      add(ours + "moe.w13", p + "w3", {f, d}, {x, 1, 0, 0});
    }
    if (e.n_shared_experts > 0) {
      const int64_t fs = e.n_shared_experts * e.shared_expert_ffn_hidden;
      add(ours + "shared.w13", ours + "shared_experts.w1", {fs, d}, {0, 0, 0});
      add(ours + "shared.w2", ours + "shared_experts.w2", {d, fs});
      add(ours + "shared.w13", ours + "shared_experts.w3", {fs, d}, {1, 0, 0});
    }
  };
  const auto add_deepseek_moe = [&](const std::string& ours, const std::string& mlp) {
    const MoeConfig& e = *m.moe;
    const int64_t x = e.n_experts, f = e.expert_ffn_hidden;
    add(ours + "moe.router", mlp + "gate", {x, d});
    if (e.expert_bias())
      add_tensor(ours + "moe.expert_bias", mlp + "gate.e_score_correction_bias", {x});
    if (e.score == RouterScore::kSoftmax) {
      add_tensor(ours + "moe.w13", mlp + "experts.gate_up_proj", {x, 2 * f, d}, {}, 0,
                 {x, 2, f, d});
      add_tensor(ours + "moe.w2", mlp + "experts.down_proj", {x, d, f});
    } else {
      for (int64_t i = 0; i < x; ++i) {
        const std::string p = fmt::format("{}experts.{}.", mlp, i);
        add(ours + "moe.w13", p + "gate_proj", {f, d}, {i, 0, 0, 0});
        add(ours + "moe.w13", p + "up_proj", {f, d}, {i, 1, 0, 0});
        add(ours + "moe.w2", p + "down_proj", {d, f}, {i, 0, 0});
      }
    }
    if (e.n_shared_experts > 0) {
      const int64_t fs = e.n_shared_experts * e.shared_expert_ffn_hidden;
      add(ours + "shared.w13", mlp + "shared_experts.gate_proj", {fs, d}, {0, 0, 0});
      add(ours + "shared.w13", mlp + "shared_experts.up_proj", {fs, d}, {1, 0, 0});
      add(ours + "shared.w2", mlp + "shared_experts.down_proj", {d, fs});
    }
  };
  add("embedding", hf ? "model.embed_tokens" : "tok_embeddings", {v, d});
  for (int64_t l = 0; l < m.n_layers; ++l) {
    const std::string ours = fmt::format("layers.{}.", l);
    const std::string p = hf ? fmt::format("model.layers.{}.", l) : ours;
    const std::string attn = p + (hf ? "self_attn." : "attention.");
    const int64_t rotary_q = hf ? 0 : m.n_heads, rotary_k = hf ? 0 : m.n_kv_heads;
    add(ours + "attn.norm", p + (hf ? "input_layernorm" : "attention_norm"), {d});
    if (m.is_mla()) {
      add_mla(ours, attn);
    } else {
      add(ours + "attn.wq", attn + (hf ? "q_proj" : "wq"), {m.n_heads * dh, d}, {}, rotary_q);
      add(ours + "attn.wk", attn + (hf ? "k_proj" : "wk"), {m.n_kv_heads * dh, d}, {}, rotary_k);
      add(ours + "attn.wv", attn + (hf ? "v_proj" : "wv"), {m.n_kv_heads * dh, d});
      add(ours + "attn.wo", attn + (hf ? "o_proj" : "wo"), {d, m.n_heads * dh});
    }
    add(ours + "ffn_norm", p + (hf ? "post_attention_layernorm" : "ffn_norm"), {d});
    if (m.moe && m.is_moe_layer(l) && m.is_mla() && !hf) {
      add_mistral_moe(ours);
    } else if (m.moe && m.is_moe_layer(l) && m.is_mla()) {
      add_deepseek_moe(ours, p + "mlp.");
    } else if (m.moe && m.is_moe_layer(l)) {
      const int64_t f = m.moe->expert_ffn_hidden;
      const std::string moe = p + (hf ? "block_sparse_moe." : "feed_forward.");
      add(ours + "moe.router", moe + "gate", {m.moe->n_experts, d});
      for (int64_t x = 0; x < m.moe->n_experts; ++x) {
        const std::string e = fmt::format("{}experts.{}.", moe, x);
        add(ours + "moe.w13", e + "w1", {f, d}, {x, 0, 0, 0});
        add(ours + "moe.w2", e + "w2", {d, f}, {x, 0, 0});
        add(ours + "moe.w13", e + "w3", {f, d}, {x, 1, 0, 0});
      }
    } else {
      const int64_t f = m.ffn_hidden;
      const std::string mlp = p + (hf ? "mlp." : "feed_forward.");
      add(ours + "ffn.w13", mlp + (hf ? "gate_proj" : "w1"), {f, d}, {0, 0, 0});
      add(ours + "ffn.w13", mlp + (hf ? "up_proj" : "w3"), {f, d}, {1, 0, 0});
      add(ours + "ffn.w2", mlp + (hf ? "down_proj" : "w2"), {d, f});
    }
  }
  add("final_norm", hf ? "model.norm" : "norm", {d});
  if (!m.tie_embeddings) add("head", hf ? "lm_head" : "output", {v, d});
  return out;
}

bool is_ignorable_tensor(const std::string& name) {
  const std::string suffix = "rotary_emb.inv_freq";
  return name.size() >= suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

namespace {

[[noreturn]] void refuse(const std::string& key, const std::string& why) {
  input_error("{}: {} (no Hugging Face class holds this model)", key, why);
}

const char* torch_dtype(DType dtype) {
  return dtype == DType::kBF16 ? "bfloat16" : dtype == DType::kF16 ? "float16" : "float32";
}

// A latent-attention model as DeepseekV3ForCausalLM (sigmoid routing with its expert bias) or
// Mistral4ForCausalLM (softmax routing, Llama 4's query scaling).
json hf_mla_config(const ModelConfig& m, DType dtype) {
  if (!m.moe) refuse("model.moe", "DeepSeek-V3 and Mistral 4 are MoE models");
  const MlaConfig& a = *m.mla;
  const MoeConfig& e = *m.moe;
  const RopeScaling& rs = m.rope_scaling;
  const bool deepseek = e.score == RouterScore::kSigmoid;
  if (m.partial_rotary_factor != 1.0)
    refuse("model.partial_rotary_factor", "MLA rotates its qk_rope_head_dim part");
  if (m.sliding_window) refuse("model.sliding_window", "MLA's classes attend to every position");
  for (int64_t l = 0; l < m.n_layers; ++l) {
    if (m.is_moe_layer(l) != (l >= e.first_dense_layers))
      refuse("model.moe.layer_pattern", "the dense layers must be the first ones");
  }
  if (deepseek && !e.expert_bias()) {
    refuse("model.moe.bias_update_rate",
           "DeepseekV3ForCausalLM's sigmoid router has an expert bias (give a rate > 0)");
  }
  if (!deepseek && e.expert_bias())
    refuse("model.moe.bias_update_rate", "Mistral4ForCausalLM's softmax router has no bias");
  if (deepseek && rs.llama_4_beta > 0)
    refuse("model.rope_scaling.llama_4_beta", "DeepSeek-V3 has no Llama 4 query scaling");
  const bool yarn = rs.type == RopeScalingType::kYarn;
  if (!deepseek && rs.llama_4_beta > 0 && yarn &&
      rs.llama_4_original_max_seq_len != rs.original_max_seq_len) {
    refuse("model.rope_scaling.llama_4_original_max_seq_len",
           "Mistral 4 takes YaRN's original_max_seq_len for Llama 4's scaling too");
  }
  const int64_t dqk = a.qk_nope_head_dim + a.qk_rope_head_dim;
  json rope = {{"rope_type", yarn ? "yarn" : "default"}, {"rope_theta", m.rope_theta}};
  if (yarn) {
    rope.update({{"factor", rs.factor},
                 {"original_max_position_embeddings", rs.original_max_seq_len},
                 {"beta_fast", rs.beta_fast},
                 {"beta_slow", rs.beta_slow},
                 {"truncate", rs.truncate}});
    if (rs.mscale) rope["mscale"] = *rs.mscale;
    if (rs.mscale_all_dim) rope["mscale_all_dim"] = *rs.mscale_all_dim;
    if (rs.attention_factor) rope["attention_factor"] = *rs.attention_factor;
  }
  if (!deepseek) {
    // Mistral4Attention always applies the query scale: beta 0 leaves the queries as they are.
    rope["llama_4_scaling_beta"] = rs.llama_4_beta;
    rope["original_max_position_embeddings"] =
        rs.llama_4_beta > 0 ? rs.llama_4_original_max_seq_len
                            : (yarn ? rs.original_max_seq_len : m.max_seq_len);
    rope["max_position_embeddings"] = m.max_seq_len;
    rope["partial_rotary_factor"] =
        static_cast<double>(a.qk_rope_head_dim) / static_cast<double>(dqk);
  }
  return {{"architectures", {deepseek ? "DeepseekV3ForCausalLM" : "Mistral4ForCausalLM"}},
          {"model_type", deepseek ? "deepseek_v3" : "mistral4"},
          {"vocab_size", m.vocab_size},
          {"hidden_size", m.d_model},
          {"intermediate_size", m.ffn_hidden > 0 ? m.ffn_hidden : e.expert_ffn_hidden},
          {"moe_intermediate_size", e.expert_ffn_hidden},
          {"num_hidden_layers", m.n_layers},
          {"num_attention_heads", m.n_heads},
          {"num_key_value_heads", m.n_heads},
          {"n_shared_experts", e.n_shared_experts},
          {"n_routed_experts", e.n_experts},
          {"num_experts_per_tok", e.top_k},
          {"routed_scaling_factor", e.routed_scaling_factor},
          {"n_group", e.n_groups},
          {"topk_group", e.topk_groups},
          {"norm_topk_prob", true},
          {"first_k_dense_replace", e.first_dense_layers},
          {"q_lora_rank", a.q_lora_rank > 0 ? json(a.q_lora_rank) : json(nullptr)},
          {"kv_lora_rank", a.kv_lora_rank},
          {"qk_nope_head_dim", a.qk_nope_head_dim},
          {"qk_rope_head_dim", a.qk_rope_head_dim},
          {"v_head_dim", a.v_head_dim},
          {"head_dim", deepseek ? a.qk_rope_head_dim : dqk},
          {"rope_interleave", m.rope_interleaved},
          {"rope_parameters", rope},
          {"hidden_act", "silu"},
          {"max_position_embeddings", m.max_seq_len},
          {"rms_norm_eps", m.norm_eps},
          {"tie_word_embeddings", m.tie_embeddings},
          {"initializer_range", m.init_std},
          {"attention_bias", false},
          {"attention_dropout", 0.0},
          {"bos_token_id", deepseek ? 0 : 1},
          {"eos_token_id", deepseek ? 1 : 2},
          {"use_cache", true},
          {"torch_dtype", torch_dtype(dtype)}};
}

}  // namespace

json hf_config(const ModelConfig& m, DType dtype) {
  if (m.is_mla()) return hf_mla_config(m, dtype);
  const RopeScaling& rs = m.rope_scaling;
  const bool yarn = rs.type == RopeScalingType::kYarn, ministral3 = rs.llama_4_beta > 0;
  if (m.rope_interleaved)
    refuse("model.rope_interleaved", "transformers' Mistral classes rotate half-split pairs");
  if (m.partial_rotary_factor != 1.0)
    refuse("model.partial_rotary_factor", "transformers' Mistral classes rotate every dim");
  if (ministral3 && yarn && rs.llama_4_original_max_seq_len != rs.original_max_seq_len) {
    refuse("model.rope_scaling.llama_4_original_max_seq_len",
           "Ministral 3 takes YaRN's original_max_seq_len for Llama 4's scaling too");
  }
  json j = {{"vocab_size", m.vocab_size},
            {"hidden_size", m.d_model},
            {"num_hidden_layers", m.n_layers},
            {"num_attention_heads", m.n_heads},
            {"num_key_value_heads", m.n_kv_heads},
            {"head_dim", m.head_dim},
            {"hidden_act", "silu"},
            {"max_position_embeddings", m.max_seq_len},
            {"rms_norm_eps", m.norm_eps},
            {"rope_theta", m.rope_theta},
            {"sliding_window", m.sliding_window ? json(*m.sliding_window) : json(nullptr)},
            {"tie_word_embeddings", m.tie_embeddings},
            {"initializer_range", m.init_std},
            {"attention_dropout", 0.0},
            {"bos_token_id", 1},
            {"eos_token_id", 2},
            {"use_cache", true},
            {"torch_dtype", torch_dtype(dtype)}};
  if (yarn || ministral3) {
    // transformers 4's rope_scaling (which 5 reads too), or 5's rope_parameters for Ministral 3.
    json rope = {{"rope_type", yarn ? "yarn" : "default"}};
    if (yarn) {
      rope.update({{"type", "yarn"},
                   {"factor", rs.factor},
                   {"original_max_position_embeddings", rs.original_max_seq_len},
                   {"beta_fast", rs.beta_fast},
                   {"beta_slow", rs.beta_slow},
                   {"truncate", rs.truncate}});
      if (rs.mscale) rope["mscale"] = *rs.mscale;
      if (rs.mscale_all_dim) rope["mscale_all_dim"] = *rs.mscale_all_dim;
      if (rs.attention_factor) rope["attention_factor"] = *rs.attention_factor;
    }
    if (ministral3) {
      if (m.moe) refuse("model.rope_scaling.llama_4_beta", "Ministral 3 is a dense model");
      rope.erase("type");
      rope.update({{"rope_theta", m.rope_theta},
                   {"llama_4_scaling_beta", rs.llama_4_beta},
                   {"original_max_position_embeddings", rs.llama_4_original_max_seq_len},
                   {"max_position_embeddings", m.max_seq_len}});
      j.erase("rope_theta");
      j["rope_parameters"] = rope;
    } else {
      j["rope_scaling"] = rope;
    }
  }
  if (!m.moe) {
    j["architectures"] = {ministral3 ? "Ministral3ForCausalLM" : "MistralForCausalLM"};
    j["model_type"] = ministral3 ? "ministral3" : "mistral";
    j["intermediate_size"] = m.ffn_hidden;
    return j;
  }
  const MoeConfig& e = *m.moe;
  for (int64_t l = 0; l < m.n_layers; ++l) {
    if (!m.is_moe_layer(l))
      refuse("model.moe.first_dense_layers", "Mixtral has no dense layers among its MoE layers");
  }
  if (e.n_shared_experts > 0) refuse("model.moe.n_shared_experts", "Mixtral has no shared experts");
  if (e.score != RouterScore::kSoftmax) refuse("model.moe.score", "Mixtral routes by softmax");
  j["architectures"] = {"MixtralForCausalLM"};
  j["model_type"] = "mixtral";
  j["intermediate_size"] = e.expert_ffn_hidden;
  j["num_local_experts"] = e.n_experts;
  j["num_experts_per_tok"] = e.top_k;
  j["router_aux_loss_coef"] = e.aux_loss_coeff;
  j["output_router_logits"] = false;
  j["router_jitter_noise"] = 0.0;
  return j;
}

void deinterleave_rotary_rows(float* values, int64_t heads, int64_t head_dim, int64_t cols) {
  std::vector<float> head(static_cast<size_t>(head_dim * cols));
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* rows = values + h * head_dim * cols;
    std::copy(rows, rows + head_dim * cols, head.begin());
    for (int64_t i = 0; i < half; ++i) {
      std::copy_n(head.begin() + (2 * i) * cols, cols, rows + i * cols);
      std::copy_n(head.begin() + (2 * i + 1) * cols, cols, rows + (i + half) * cols);
    }
  }
}

}  // namespace tmt
