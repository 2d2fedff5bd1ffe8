// Parameter and FLOP counts against numbers worked out by hand from the formulas' definitions and
// against Mixtral's published sizes.
#include "trainer/model/model_stats.h"

#include <gtest/gtest.h>

namespace tmt {
namespace {

ModelConfig mixtral_8x7b() {
  ModelConfig m;
  m.vocab_size = 32000;
  m.d_model = 4096;
  m.n_layers = 32;
  m.n_heads = 32;
  m.n_kv_heads = 8;
  m.head_dim = 128;
  m.ffn_hidden = 14336;
  MoeConfig e;
  e.n_experts = 8;
  e.top_k = 2;
  e.expert_ffn_hidden = 14336;
  e.shared_expert_ffn_hidden = 14336;
  m.moe = e;
  return m;
}

TEST(ModelStats, Mixtral8x7bMatchesPublishedSizes) {
  const ModelStats s = model_stats(mixtral_8x7b(), 4096);
  EXPECT_NEAR(static_cast<double>(s.total_params), 46.7e9, 0.01 * 46.7e9);
  EXPECT_NEAR(static_cast<double>(s.active_params), 12.9e9, 0.01 * 12.9e9);
  EXPECT_EQ(s.moe_layers, 32);
  EXPECT_EQ(s.dense_layers, 0);
}

TEST(ModelStats, SmallModelByHand) {
  // D=8, V=10, 2 layers (first dense), H=2, Hk=1, Dh=4, F=16; MoE: E=4, K=2, Fe=6, one shared
  // expert Fs=5.
  ModelConfig m;
  m.vocab_size = 10;
  m.d_model = 8;
  m.n_layers = 2;
  m.n_heads = 2;
  m.n_kv_heads = 1;
  m.head_dim = 4;
  m.ffn_hidden = 16;
  MoeConfig e;
  e.n_experts = 4;
  e.top_k = 2;
  e.expert_ffn_hidden = 6;
  e.n_shared_experts = 1;
  e.shared_expert_ffn_hidden = 5;
  e.first_dense_layers = 1;
  m.moe = e;
  // attention: 8*8 + 2*8*4 + 8*8 = 192, norms 16 -> 208 per layer
  // dense FFN: 3*8*16 = 384; MoE: router 32 + 4*144 + 120 = 728 (active: 32 + 2*144 + 120 = 440)
  // embedding 80 + head 80 + final norm 8
  const int64_t total = 2 * 208 + 384 + 728 + 80 + 80 + 8;
  const int64_t active = total - 2 * 144;
  const ModelStats s = model_stats(m, 6);
  EXPECT_EQ(s.total_params, total);
  EXPECT_EQ(s.active_params, active);
  // matmul params per token: attention 2*192, dense 384, MoE active 440, head 80
  EXPECT_DOUBLE_EQ(s.matmul_flops_per_token, 6.0 * (2 * 192 + 384 + 440 + 80));
  // causal over S=6: mean keys = (1+2+...+6)/6 = 3.5; 12 * L * H * Dh * 3.5
  EXPECT_DOUBLE_EQ(s.attention_flops_per_token, 12.0 * 2 * 2 * 4 * 3.5);
  m.sliding_window = 2;  // keys per query: 1, 2, 2, 2, 2, 2 -> mean 11/6
  EXPECT_DOUBLE_EQ(model_stats(m, 6).attention_flops_per_token, 12.0 * 2 * 2 * 4 * 11.0 / 6.0);
  m.tie_embeddings = true;
  EXPECT_EQ(model_stats(m, 6).total_params, total - 80);
}

TEST(ModelStats, LatentAttentionMatchesTransformers) {
  // One dense layer of DeepSeek-V3's attention (D 7168, 128 heads, q latent 1536, kv latent 512,
  // q/k 128 + 64 RoPE, v 128): transformers 5.23's DeepseekV3Attention holds 187,107,328
  // parameters (its norms' included), 314,507,776 without the q latent (q_lora_rank None).
  ModelConfig m;
  m.vocab_size = 3;
  m.d_model = 7168;
  m.n_layers = 1;
  m.n_heads = 128;
  m.ffn_hidden = 2;
  m.attention = AttentionKind::kMla;
  m.mla = MlaConfig{.q_lora_rank = 1536,
                    .kv_lora_rank = 512,
                    .qk_nope_head_dim = 128,
                    .qk_rope_head_dim = 64,
                    .v_head_dim = 128};
  const int64_t rest = 2 * 7168 + 3 * 7168 * 2 + 2 * 3 * 7168 + 7168;  // norms, FFN, embed, head
  const ModelStats s = model_stats(m, 4);
  EXPECT_EQ(s.total_params, 187107328 + rest);
  // matmuls: everything but the norms (the block's two, the latents' two) and the embedding
  EXPECT_DOUBLE_EQ(s.matmul_flops_per_token,
                   6.0 * (187107328 - 1536 - 512 + 3 * 7168 * 2 + 3 * 7168));
  // causal over S=4: mean keys 2.5; 6 · H · (Dqk + Dv) · 2.5
  EXPECT_DOUBLE_EQ(s.attention_flops_per_token, 6.0 * 128 * (192 + 128) * 2.5);
  // the cache: the kv latent and the one RoPE key, 576 values a layer (DeepSeek-V3's 61 layers:
  // 70,272 bytes a token in bf16)
  EXPECT_EQ(s.kv_cache_values_per_token, 576);
  // without the latent, with as many kv heads as query heads (transformers' num_key_value_heads):
  // keys of 192 and values of 128 in each of the 128 heads, 71.1 times as much
  m.n_kv_heads = 128;
  EXPECT_EQ(model_stats(m, 4).gqa_kv_cache_values_per_token, 128 * (192 + 128));
  m.n_kv_heads = 8;
  EXPECT_EQ(model_stats(m, 4).gqa_kv_cache_values_per_token, 8 * (192 + 128));
  m.mla->q_lora_rank = 0;
  EXPECT_EQ(model_stats(m, 4).total_params, 314507776 + rest);
}

TEST(ModelStats, GqaKvCache) {
  // Mixtral 8x7B: 32 layers of k and v, 8 kv heads of 128: 128 KiB a token in bf16
  const ModelStats s = model_stats(mixtral_8x7b(), 16);
  EXPECT_EQ(s.kv_cache_values_per_token, 32 * 2 * 8 * 128);
  EXPECT_EQ(s.gqa_kv_cache_values_per_token, s.kv_cache_values_per_token);
}

TEST(ModelStats, HumanCount) {
  EXPECT_EQ(human_count(46.70e9), "46.70B");
  EXPECT_EQ(human_count(141.2e9), "141.2B");
  EXPECT_EQ(human_count(512), "512");
  EXPECT_EQ(human_count(1.5e6), "1.50M");
}

}  // namespace
}  // namespace tmt
