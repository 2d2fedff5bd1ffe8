// Hugging Face config.json -> ModelConfig for RoPE (trainer/interop/published.h): transformers 5's
// rope_parameters and transformers 4's rope_scaling read alike, with transformers' defaults; mscale
// kept only beside mscale_all_dim; Ministral 3's llama_4_scaling_beta; what no class holds refused
// with one error naming the file and key; and hf_config written back reads as the same model.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/temp_dir.h"
#include "trainer/interop/published.h"

namespace tmt {
namespace {
using nlohmann::json;

json mistral() {
  return {{"architectures", {"MistralForCausalLM"}},
          {"vocab_size", 128},
          {"hidden_size", 32},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"intermediate_size", 64},
          {"max_position_embeddings", 4096}};
}

PublishedConfig read(const json& config) {
  test::TempDir dir;
  std::ofstream(dir.file("config.json")) << config.dump();
  return read_published_config(dir.path());
}

// The InputError's message, or "" when `config` reads.
std::string refusal(const json& config) {
  try {
    read(config);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(PublishedConfig, TransformersFourRopeScalingWithItsDefaults) {
  json c = mistral();
  c["rope_theta"] = 5e5;
  c["rope_scaling"] = {{"type", "yarn"},
                       {"factor", 8.0},
                       {"original_max_position_embeddings", 512},
                       {"mscale", 0.7}};  // mscale alone: transformers ignores it
  const ModelConfig m = read(c).model;
  const RopeScaling& rs = m.rope_scaling;
  EXPECT_EQ(rs.type, RopeScalingType::kYarn);
  EXPECT_DOUBLE_EQ(m.rope_theta, 5e5);
  EXPECT_DOUBLE_EQ(rs.factor, 8.0);
  EXPECT_EQ(rs.original_max_seq_len, 512);
  EXPECT_DOUBLE_EQ(rs.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(rs.beta_slow, 1.0);
  EXPECT_FALSE(rs.mscale.has_value());
  EXPECT_FALSE(rs.mscale_all_dim.has_value());
  EXPECT_TRUE(rs.truncate);
  EXPECT_DOUBLE_EQ(rs.llama_4_beta, 0.0);  // only Ministral 3 has it

  // No factor: transformers takes max_position_embeddings / original_max_position_embeddings.
  c["rope_scaling"].erase("factor");
  EXPECT_DOUBLE_EQ(read(c).model.rope_scaling.factor, 8.0);
  c["rope_scaling"] = nullptr;  // transformers 4 writes null for plain RoPE
  EXPECT_EQ(read(c).model.rope_scaling.type, RopeScalingType::kNone);
}

TEST(PublishedConfig, TransformersFiveRopeParametersOfMinistral3) {
  json c = mistral();
  c["architectures"] = {"Ministral3ForCausalLM"};
  c["rope_parameters"] = {{"rope_type", "yarn"},
                          {"rope_theta", 1e6},
                          {"factor", 16.0},
                          {"original_max_position_embeddings", 256},
                          {"beta_fast", 16.0},
                          {"beta_slow", 2.0},
                          {"mscale", 1.0},
                          {"mscale_all_dim", 0.5},
                          {"truncate", false},
                          {"llama_4_scaling_beta", 0.1},
                          {"max_position_embeddings", 4096}};
  const PublishedConfig p = read(c);
  const RopeScaling& rs = p.model.rope_scaling;
  EXPECT_DOUBLE_EQ(p.model.rope_theta, 1e6);
  EXPECT_DOUBLE_EQ(rs.beta_fast, 16.0);
  EXPECT_DOUBLE_EQ(rs.beta_slow, 2.0);
  EXPECT_DOUBLE_EQ(rs.mscale.value_or(0), 1.0);
  EXPECT_DOUBLE_EQ(rs.mscale_all_dim.value_or(0), 0.5);
  EXPECT_FALSE(rs.truncate);
  EXPECT_DOUBLE_EQ(rs.llama_4_beta, 0.1);
  EXPECT_EQ(rs.llama_4_original_max_seq_len, 256);

  // hf_config writes it back as transformers 5's rope_parameters, which reads as the same model.
  const json out = hf_config(p.model, DType::kBF16);
  EXPECT_EQ(out["architectures"][0], "Ministral3ForCausalLM");
  EXPECT_EQ(out["model_type"], "ministral3");
  const ModelConfig again = read(out).model;
  EXPECT_EQ(again.rope_scaling.type, rs.type);
  EXPECT_DOUBLE_EQ(again.rope_theta, 1e6);
  EXPECT_DOUBLE_EQ(again.rope_scaling.factor, rs.factor);
  EXPECT_EQ(again.rope_scaling.mscale, rs.mscale);
  EXPECT_EQ(again.rope_scaling.mscale_all_dim, rs.mscale_all_dim);
  EXPECT_EQ(again.rope_scaling.truncate, rs.truncate);
  EXPECT_DOUBLE_EQ(again.rope_scaling.llama_4_beta, 0.1);
  EXPECT_EQ(again.rope_scaling.llama_4_original_max_seq_len, 256);

  // A YaRN Mistral goes out as transformers 4's rope_scaling (which 5 reads too).
  ModelConfig m = p.model;
  m.rope_scaling.llama_4_beta = 0;
  const json mo = hf_config(m, DType::kBF16);
  EXPECT_EQ(mo["architectures"][0], "MistralForCausalLM");
  EXPECT_EQ(mo["rope_scaling"]["type"], "yarn");
  EXPECT_EQ(read(mo).model.rope_scaling.original_max_seq_len, 256);
}

TEST(PublishedConfig, WhatNoClassHoldsIsRefusedNamingTheKey) {
  json c = mistral();
  c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  EXPECT_NE(refusal(c).find("rope_scaling: rope_type: 'llama3' is not supported"),
            std::string::npos)
      << refusal(c);
  c = mistral();
  c["partial_rotary_factor"] = 0.5;
  EXPECT_NE(refusal(c).find("config.json: partial_rotary_factor"), std::string::npos);
  c = mistral();
  c["architectures"] = {"Ministral3ForCausalLM"};
  c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};
  EXPECT_NE(refusal(c).find("llama_4_scaling_beta: missing"), std::string::npos) << refusal(c);

  ModelConfig m = read(mistral()).model;
  const auto export_refusal = [](const ModelConfig& model) -> std::string {
    try {
      hf_config(model, DType::kBF16);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  m.rope_interleaved = true;
  EXPECT_NE(export_refusal(m).find("model.rope_interleaved"), std::string::npos);
  m.rope_interleaved = false;
  m.partial_rotary_factor = 0.5;
  EXPECT_NE(export_refusal(m).find("model.partial_rotary_factor"), std::string::npos);
  m.partial_rotary_factor = 1.0;
  m.rope_scaling.type = RopeScalingType::kYarn;
  m.rope_scaling.factor = 4;
  m.rope_scaling.original_max_seq_len = 64;
  m.rope_scaling.llama_4_beta = 0.1;
  m.rope_scaling.llama_4_original_max_seq_len = 32;
  EXPECT_NE(export_refusal(m).find("model.rope_scaling.llama_4_original_max_seq_len"),
            std::string::npos);
}

// A latent-attention model goes out as DeepseekV3ForCausalLM (sigmoid routing, its expert bias) or
// Mistral4ForCausalLM (softmax, no bias), reads back as the same model, and what neither class
// holds is refused naming the recipe key.
TEST(PublishedConfig, LatentAttentionModelsGoOutAsDeepseekV3OrMistral4) {
  json c = mistral();
  c.update({{"architectures", {"DeepseekV3ForCausalLM"}},
            {"num_key_value_heads", 4},
            {"rms_norm_eps", 1e-6},
            {"q_lora_rank", nullptr},
            {"kv_lora_rank", 16},
            {"qk_nope_head_dim", 8},
            {"qk_rope_head_dim", 4},
            {"v_head_dim", 6},
            {"n_routed_experts", 8},
            {"num_experts_per_tok", 2},
            {"moe_intermediate_size", 8},
            {"n_shared_experts", 1},
            {"first_k_dense_replace", 1},
            {"n_group", 2},
            {"topk_group", 1},
            {"routed_scaling_factor", 2.5}});
  ModelConfig m = read(c).model;
  ASSERT_TRUE(m.is_mla() && m.moe);
  EXPECT_EQ(m.mla->q_lora_rank, 0);
  EXPECT_TRUE(m.rope_interleaved);  // transformers' default rope_interleave
  EXPECT_EQ(m.moe->score, RouterScore::kSigmoid);
  EXPECT_TRUE(m.moe->expert_bias());
  const json out = hf_config(m, DType::kBF16);
  EXPECT_EQ(out["architectures"][0], "DeepseekV3ForCausalLM");
  EXPECT_EQ(out["q_lora_rank"], nullptr);
  EXPECT_EQ(out["head_dim"], 4);
  const ModelConfig again = read(out).model;
  EXPECT_EQ(again.mla->kv_lora_rank, 16);
  EXPECT_EQ(again.moe->first_dense_layers, 1);
  EXPECT_DOUBLE_EQ(again.moe->routed_scaling_factor, 2.5);

  const auto export_refusal = [](const ModelConfig& model) -> std::string {
    try {
      hf_config(model, DType::kBF16);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  ModelConfig no_bias = m;
  no_bias.moe->bias_update_rate = 0;
  EXPECT_NE(export_refusal(no_bias).find("model.moe.bias_update_rate"), std::string::npos);
  ModelConfig softmax = m;
  softmax.moe->score = RouterScore::kSoftmax;
  EXPECT_NE(export_refusal(softmax).find("model.moe.bias_update_rate"), std::string::npos);
  softmax.moe->bias_update_rate = 0;
  EXPECT_EQ(hf_config(softmax, DType::kBF16)["architectures"][0], "Mistral4ForCausalLM");
  ModelConfig llama4 = m;
  llama4.rope_scaling.llama_4_beta = 0.1;
  EXPECT_NE(export_refusal(llama4).find("model.rope_scaling.llama_4_beta"), std::string::npos);
  ModelConfig window = m;
  window.sliding_window = 8;
  EXPECT_NE(export_refusal(window).find("model.sliding_window"), std::string::npos);
}

}  // namespace
}  // namespace tmt
