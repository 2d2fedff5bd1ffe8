// Recipes that are good: values, defaults, overrides, the round trip through to_yaml, and the
// layout arithmetic. (Malformed recipes are tested end to end in cli_test over
// tests/trainer/bad_recipes/.)
#include "trainer/recipe/recipe.h"

#include <gtest/gtest.h>

#include "kernels/base/check.h"
#include "tests/support/run.h"

namespace tmt {
namespace {

const char* kMinimal = R"(
model:
  vocab_size: 1000
  d_model: 128
  n_layers: 6
  n_heads: 8
  ffn_hidden: 512
  moe:
    n_experts: 8
    top_k: 2
    expert_ffn_hidden: 256
    first_dense_layers: 2
data:
  seq_len: 256
train:
  steps: 100
  global_batch: 32
)";

TEST(Recipe, DefaultsAreFilledIn) {
  const Recipe r = parse_recipe(kMinimal, "minimal.yaml", {});
  EXPECT_EQ(r.model.n_kv_heads, 8);
  EXPECT_EQ(r.model.head_dim, 16);
  EXPECT_EQ(r.model.max_seq_len, 256);
  EXPECT_DOUBLE_EQ(r.model.rope_theta, 10000.0);
  EXPECT_FALSE(r.model.sliding_window.has_value());
  ASSERT_TRUE(r.model.moe.has_value());
  EXPECT_EQ(r.model.moe->shared_expert_ffn_hidden, 256);
  EXPECT_FALSE(r.model.moe->capacity_factor.has_value());
  EXPECT_EQ(r.model.moe->score, "softmax");
  EXPECT_EQ(r.data.source, "synthetic");
  EXPECT_EQ(r.train.micro_batch, 1);
  EXPECT_EQ(r.train.dtype, "fp32");
  EXPECT_EQ(r.schedule.decay, "cosine");
  EXPECT_EQ(r.parallel.tp, 1);
  EXPECT_EQ(r.parallel.dp, 0);  // until resolve_layout
  EXPECT_EQ(required_world(r), 0);
}

TEST(Recipe, MoeLayersFromFirstDenseLayersOrPattern) {
  Recipe r = parse_recipe(kMinimal, "minimal.yaml", {});
  std::vector<bool> moe;
  for (int64_t l = 0; l < 6; ++l) moe.push_back(r.model.is_moe_layer(l));
  EXPECT_EQ(moe, (std::vector<bool>{false, false, true, true, true, true}));
  r = parse_recipe(kMinimal, "minimal.yaml",
                   {"model.moe.first_dense_layers=null",
                    "model.moe.layer_pattern=[moe,dense,moe,dense,moe,dense]"});
  EXPECT_TRUE(r.model.is_moe_layer(0));
  EXPECT_FALSE(r.model.is_moe_layer(5));
}

TEST(Recipe, OverridesApplyInOrderAndRecordTheirOrigin) {
  const Recipe r =
      parse_recipe(kMinimal, "minimal.yaml",
                   {"train.steps=7", "train.steps=9", "optimizer.lr=1e-3",
                    "data.synthetic.branching=3", "model.sliding_window=64", "run.dir=/tmp/x y"});
  EXPECT_EQ(r.train.steps, 9);
  EXPECT_DOUBLE_EQ(r.optimizer.lr, 1e-3);
  EXPECT_EQ(r.data.synthetic.branching, 3);
  EXPECT_EQ(r.model.sliding_window, 64);
  EXPECT_EQ(r.run.dir, "/tmp/x y");
  EXPECT_EQ(r.origin_of("train.steps"), "--set train.steps=9");
  EXPECT_EQ(r.origin_of("model.d_model"), "minimal.yaml:4:3");
  EXPECT_EQ(r.origin_of("model.moe.top_k"), "minimal.yaml:10:5");
  EXPECT_EQ(r.origin_of("checkpoint.keep"), "minimal.yaml");  // not given anywhere
}

TEST(Recipe, ResolvedYamlParsesBackToTheSameRecipe) {
  const std::pair<const char*, int> recipes[] = {{"recipes/tiny.yaml", 4},
                                                 {"recipes/mixtral-8x7b.yaml", 64},
                                                 {"recipes/mixtral-8x22b.yaml", 128},
                                                 {"recipes/bench-1gpu.yaml", 1}};
  for (const auto& [path, world] : recipes) {
    Recipe r = load_recipe(test::source_path(path), {});
    resolve_layout(r, world);
    const std::string once = to_yaml(r);
    Recipe again = parse_recipe(once, "resolved.yaml", {});
    resolve_layout(again, r.parallel.tp * r.parallel.dp * r.parallel.pp);
    EXPECT_EQ(to_yaml(again), once) << path;
    EXPECT_EQ(again.parallel.edp, r.parallel.edp);
  }
}

TEST(Recipe, LayoutDerivesDataAndExpertDataParallelSizes) {
  Recipe r = load_recipe(test::source_path("recipes/mixtral-8x7b.yaml"), {});
  resolve_layout(r, 64);
  EXPECT_EQ(r.parallel.dp, 16);
  EXPECT_EQ(r.parallel.edp, 2);
  EXPECT_FALSE(r.parallel.sequence_parallel);
  Recipe big = load_recipe(test::source_path("recipes/mixtral-8x22b.yaml"), {});
  resolve_layout(big, 128);
  EXPECT_EQ(big.parallel.dp, 8);
  EXPECT_EQ(big.parallel.edp, 2);
  EXPECT_TRUE(big.parallel.sequence_parallel);
  Recipe tiny =
      parse_recipe(kMinimal, "minimal.yaml", {"parallel.tp=2", "parallel.ep=4", "parallel.etp=2"});
  resolve_layout(tiny, 8);  // dp 4; stage of 8 ranks = etp 2 x ep 4 x edp 1
  EXPECT_EQ(tiny.parallel.dp, 4);
  EXPECT_EQ(tiny.parallel.edp, 1);
  EXPECT_THROW(resolve_layout(tiny, 6), InputError);
}

TEST(Recipe, TheEmbeddedDefaultIsTiny) {
  const Recipe embedded = load_recipe("", {});
  const Recipe file = load_recipe(test::source_path("recipes/tiny.yaml"), {});
  EXPECT_EQ(to_yaml(embedded), to_yaml(file));
}

}  // namespace
}  // namespace tmt
