// The whole model's backward against finite differences in fp64: a micro MoE (one dense layer, MoE
// layers with a shared expert, GQA, a sliding window, tied and untied heads; interleaved partial
// RoPE with YaRN and Llama 4 query scaling) on a random batch.
// Every parameter tensor is checked on a sample of its elements, against the total loss lm + aux +
// z; also with DeepSeek-V3's routing (groups, sigmoid, an expert bias, the sequence-wise loss), where
// the bias, which takes no gradient, must show none in the finite differences either; and with
// multi-head latent attention, with and without the query latent.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/base/rng.h"
#include "tests/support/compare.h"
#include "trainer/model/model.h"

namespace tmt {
namespace {

Recipe micro_recipe(bool tie, std::optional<int64_t> window,
                    const std::vector<std::string>& overrides = {}) {
  Recipe r = parse_recipe(R"(
model:
  vocab_size: 23
  d_model: 12
  n_layers: 3
  n_heads: 4
  n_kv_heads: 2
  head_dim: 4
  ffn_hidden: 10
  init_std: 0.3
  moe:
    n_experts: 5
    top_k: 2
    expert_ffn_hidden: 6
    n_shared_experts: 1
    shared_expert_ffn_hidden: 4
    first_dense_layers: 1
    aux_loss_coeff: 0.1
    z_loss_coeff: 0.01
data:
  seq_len: 7
train:
  steps: 1
  global_batch: 2
  micro_batch: 2
  seed: 5
)",
                          "micro", overrides);
  r.model.tie_embeddings = tie;
  r.model.sliding_window = window;
  resolve_layout(r, 1);
  return r;
}

double total_loss(const LossParts& p) {
  return p.lm_loss_sum / static_cast<double>(p.lm_tokens) + p.aux_loss + p.z_loss;
}

void check_model_gradients(const Recipe& r, bool random_bias = false) {
  Model model(r.model,
              {.dtype = DType::kF64,
               .micro_batch = r.train.micro_batch,
               .seq_len = r.data.seq_len,
               .seed = r.train.seed},
              Context{});
  Arena arena(Device::kCpu, 1 << 16, "batch");
  const MicroBatch batch{arena.alloc(DType::kI32, {2, 7}), arena.alloc(DType::kI32, {2, 7})};
  for (int64_t i = 0; i < 14; ++i) {
    batch.inputs.ptr<int32_t>()[i] =
        static_cast<int32_t>(random_bits(1, 1, static_cast<uint64_t>(i)) % 23);
    batch.targets.ptr<int32_t>()[i] =
        i == 4 ? -1 : static_cast<int32_t>(random_bits(1, 2, static_cast<uint64_t>(i)) % 23);
  }
  if (random_bias) {  // the expert biases start at zero: give them values that steer the choice
    for (Param& p : model.params().all()) {
      if (!p.spec.name.ends_with(".moe.expert_bias")) continue;
      for (int64_t i = 0; i < p.value.numel(); ++i)
        p.value.ptr<double>()[i] =
            0.2 * random_normal(3, hash_name(p.spec.name), static_cast<uint64_t>(i));
    }
  }
  if (r.model.is_mla()) {  // the latent attention's parameters, and the GQA ones gone
    int mla_params = 0;
    for (const Param& p : model.params().all()) {
      EXPECT_FALSE(p.spec.name.ends_with(".attn.wk")) << p.spec.name;
      mla_params +=
          p.spec.name.ends_with(".attn.wkv_b") || p.spec.name.ends_with(".attn.kv_a_norm");
      mla_params += p.spec.name.ends_with(".attn.wq_a") || p.spec.name.ends_with(".attn.q_a_norm");
    }
    EXPECT_EQ(mla_params, (r.model.mla->q_lora_rank > 0 ? 4 : 2) * r.model.n_layers);
  }
  model.params().zero_grads();
  const LossParts parts = model.forward_backward(batch, 1.0 / 13.0, 1.0);
  EXPECT_EQ(parts.lm_tokens, 13);
  EXPECT_GT(parts.aux_loss, 0.0);
  EXPECT_GT(parts.z_loss, 0.0);
  const double eps = 1e-6;
  for (Param& p : model.params().all()) {
    double* w = p.value.ptr<double>();
    const double* g = p.grad.ptr<const double>();
    std::vector<double> numeric, analytic;
    const int64_t n = p.value.numel();
    const int64_t samples = std::min<int64_t>(n, 24);
    for (int64_t s = 0; s < samples; ++s) {
      const auto i =
          static_cast<int64_t>(random_bits(9, hash_name(p.spec.name), static_cast<uint64_t>(s)) %
                               static_cast<uint64_t>(n));
      const double saved = w[i];
      w[i] = saved + eps;
      const double up = total_loss(model.forward(batch));
      w[i] = saved - eps;
      const double down = total_loss(model.forward(batch));
      w[i] = saved;
      numeric.push_back((up - down) / (2 * eps));
      analytic.push_back(g[i]);
    }
    EXPECT_TRUE(test::all_close(analytic, numeric, 1e-5)) << p.spec.name;
  }
}

TEST(ModelGradient, UntiedFullAttention) {
  check_model_gradients(micro_recipe(false, std::nullopt));
}
TEST(ModelGradient, TiedWithSlidingWindow) { check_model_gradients(micro_recipe(true, 3)); }
TEST(ModelGradient, InterleavedPartialRopeWithYarnAndLlama4Scaling) {
  Recipe r = micro_recipe(false, std::nullopt);
  r.model.rope_interleaved = true;
  r.model.partial_rotary_factor = 0.5;  // 2 of the 4 dims rotate
  RopeScaling& rs = r.model.rope_scaling;
  rs.type = RopeScalingType::kYarn;
  rs.factor = 4;
  rs.original_max_seq_len = 2;
  rs.beta_fast = 0.5;
  rs.beta_slow = 0.05;
  rs.mscale = 1.0;
  rs.mscale_all_dim = 0.5;
  rs.llama_4_beta = 0.3;  // the queries' scale steps at positions 2, 4, 6
  rs.llama_4_original_max_seq_len = 2;
  check_model_gradients(r);
}

TEST(ModelGradient, GroupLimitedSigmoidRoutingWithBiasAndSequenceWiseLoss) {
  // DeepSeek-V3's routing: 6 experts in 3 groups (2 eligible), sigmoid scores, a random expert
  // bias, scaled weights, and the sequence-wise loss beside the micro-batch ones.
  check_model_gradients(
      micro_recipe(false, std::nullopt,
                   {"model.moe.n_experts=6", "model.moe.score=sigmoid", "model.moe.n_groups=3",
                    "model.moe.topk_groups=2", "model.moe.routed_scaling_factor=2.5",
                    "model.moe.bias_update_rate=0.01", "model.moe.seq_aux_loss_coeff=0.2"}),
      /*random_bias=*/true);
}

// Multi-head latent attention (trainer/model/mla_layer.h) in every layer, with the query latent
// and without, and heads whose value size differs from the query/key size.
std::vector<std::string> mla(int64_t q_lora_rank) {
  return {"model.attention=mla",          "model.mla.q_lora_rank=" + std::to_string(q_lora_rank),
          "model.mla.kv_lora_rank=5",     "model.mla.qk_nope_head_dim=3",
          "model.mla.qk_rope_head_dim=4", "model.mla.v_head_dim=2"};
}
TEST(ModelGradient, LatentAttentionWithQueryLatent) {
  check_model_gradients(micro_recipe(false, std::nullopt, mla(6)));
}
TEST(ModelGradient, LatentAttentionWithoutQueryLatent) {
  check_model_gradients(micro_recipe(true, std::nullopt, mla(0)));
}
TEST(ModelGradient, LatentAttentionAsMistralLarge3WithSharedExpertAndBias) {
  // The Mistral Large 3 / DeepSeek-V3 block in miniature: MLA with interleaved RoPE, YaRN whose
  // mscale_all_dim scales the softmax, Llama 4's query scale (stepping at positions 2, 4, 6), a
  // dense first layer, a shared expert beside routed ones, sigmoid routing with a random bias.
  std::vector<std::string> sets = mla(6);
  for (const char* s :
       {"model.rope_interleaved=true", "model.rope_scaling.type=yarn",
        "model.rope_scaling.factor=4", "model.rope_scaling.original_max_seq_len=2",
        "model.rope_scaling.beta_fast=0.5", "model.rope_scaling.beta_slow=0.05",
        "model.rope_scaling.mscale=1", "model.rope_scaling.mscale_all_dim=0.7",
        "model.rope_scaling.llama_4_beta=0.3", "model.rope_scaling.llama_4_original_max_seq_len=2",
        "model.moe.first_dense_layers=1", "model.moe.n_shared_experts=1",
        "model.moe.shared_expert_ffn_hidden=3", "model.moe.score=sigmoid",
        "model.moe.bias_update_rate=0.01"}) {
    sets.push_back(s);
  }
  check_model_gradients(micro_recipe(false, std::nullopt, sets), /*random_bias=*/true);
}

}  // namespace
}  // namespace tmt
