#include "tests/support/reference_fixture.h"

#include <nlohmann/json.hpp>

#include "tests/support/run.h"

namespace tmt::test {

std::vector<std::string> reference_fixture_names() { return {"micro_moe", "micro_moe_window"}; }

Recipe reference_recipe(const std::string& name) {
  Recipe r = load_recipe(source_path("tests/fixtures/reference/" + name + ".yaml"), {});
  resolve_layout(r, 1);
  return r;
}

std::string reference_config_json(const Recipe& r) {
  const ModelConfig& m = r.model;
  nlohmann::json c;
  c["vocab_size"] = m.vocab_size;
  c["d_model"] = m.d_model;
  c["n_layers"] = m.n_layers;
  c["n_heads"] = m.n_heads;
  c["n_kv_heads"] = m.n_kv_heads;
  c["head_dim"] = m.head_dim;
  c["ffn_hidden"] = m.ffn_hidden;
  c["norm_eps"] = m.norm_eps;
  c["rope_theta"] = m.rope_theta;
  c["sliding_window"] =
      m.sliding_window ? nlohmann::json(*m.sliding_window) : nlohmann::json(nullptr);
  c["tie_embeddings"] = m.tie_embeddings;
  if (m.moe) {
    nlohmann::json e;
    e["n_experts"] = m.moe->n_experts;
    e["top_k"] = m.moe->top_k;
    e["expert_ffn_hidden"] = m.moe->expert_ffn_hidden;
    e["n_shared_experts"] = m.moe->n_shared_experts;
    e["shared_expert_ffn_hidden"] = m.moe->shared_expert_ffn_hidden;
    std::vector<int64_t> layers;
    for (int64_t l = 0; l < m.n_layers; ++l) {
      if (m.is_moe_layer(l)) layers.push_back(l);
    }
    e["moe_layers"] = layers;
    e["score"] = std::string(name_of(m.moe->score));
    e["aux_loss_coeff"] = m.moe->aux_loss_coeff;
    e["z_loss_coeff"] = m.moe->z_loss_coeff;
    c["moe"] = e;
  } else {
    c["moe"] = nullptr;
  }
  c["seq_len"] = r.data.seq_len;
  c["batch"] = r.train.micro_batch;
  return c.dump();
}

}  // namespace tmt::test
