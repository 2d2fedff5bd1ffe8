// Recipes that are good: values, defaults, overrides, the round trip through to_yaml, and the
// layout arithmetic. (Malformed recipes are tested end to end in cli_test over
// tests/trainer/bad_recipes/.)
#include "trainer/recipe/recipe.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

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
  EXPECT_EQ(r.model.moe->score, RouterScore::kSoftmax);
  EXPECT_EQ(r.data.source, DataSourceKind::kSynthetic);
  EXPECT_EQ(r.train.micro_batch, 1);
  EXPECT_EQ(r.train.dtype, DType::kF32);
  EXPECT_EQ(r.schedule.decay, LrDecay::kCosine);
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

// FP8 on cuda (kernels/cuda/fp8_linear.h) takes bf16, the blockwise recipe and linears whose
// per-rank widths are whole 16-byte rows; each refusal names its key.
TEST(Recipe, Fp8OnCudaTakesBf16BlockwiseAndWholeRows) {
  const std::vector<std::string> cuda = {"train.device=cuda", "train.dtype=bf16",
                                         "train.precision=fp8"};
  const auto error_of = [&](std::vector<std::string> extra) -> std::string {
    std::vector<std::string> overrides = cuda;
    overrides.insert(overrides.end(), extra.begin(), extra.end());
    try {
      parse_recipe(kMinimal, "minimal.yaml", overrides);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(error_of({}), "");
  EXPECT_EQ(error_of({"fp8.pow2_scales=true"}), "");
  EXPECT_NE(error_of({"fp8.recipe=mxfp8"}).find("fp8.recipe"), std::string::npos);
  EXPECT_NE(error_of({"model.moe.expert_ffn_hidden=264"}).find("model.moe.expert_ffn_hidden"),
            std::string::npos);
  EXPECT_NE(error_of({"model.ffn_hidden=520"}).find("model.ffn_hidden"), std::string::npos);
  // 8 heads of 12: a query width of 96 is whole rows, 2 kv heads of 12 (24) are not.
  EXPECT_NE(error_of({"model.head_dim=12", "model.n_kv_heads=2"}).find("model.n_kv_heads"),
            std::string::npos);
  // The CPU's fake quantization takes any width.
  EXPECT_NO_THROW(parse_recipe(kMinimal, "minimal.yaml",
                               {"train.precision=fp8", "model.moe.expert_ffn_hidden=264"}));
}

TEST(Recipe, ResolvedYamlParsesBackToTheSameRecipe) {
  const std::pair<const char*, int> recipes[] = {{"recipes/tiny.yaml", 4},
                                                 {"recipes/mixtral-8x7b.yaml", 64},
                                                 {"recipes/mixtral-8x22b.yaml", 128},
                                                 {"recipes/bench-1gpu.yaml", 1},
                                                 {"recipes/mistral-large-3.yaml", 1024},
                                                 {"recipes/mistral-small-4.yaml", 64},
                                                 {"recipes/deepseek-v3.yaml", 1024},
                                                 {"recipes/tiny-mistral-large-3.yaml", 1},
                                                 {"recipes/tiny-mistral-small-4.yaml", 1}};
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

// The node at a dotted path of a YAML tree (an undefined node when some part is missing).
YAML::Node at_path(YAML::Node node, const std::string& path) {
  std::stringstream parts(path);
  for (std::string part; std::getline(parts, part, '.');) {
    if (!node.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    node.reset(node[part]);
  }
  return node;
}

TEST(Recipe, ResolvedYamlHoldsEverySchemaKeyWithItsValue) {
  // Every key of the schema, on a MoE recipe with latent attention (the model.moe and model.mla
  // keys exist only with experts and MLA) and with the optional values set, so that no key is
  // written as null for want of a value.
  Recipe r = load_recipe(
      test::source_path("recipes/tiny.yaml"),
      {"model.sliding_window=64", "model.moe.capacity_factor=1.5", "parallel.pp_layers=[3,1]",
       "data.val_paths=[x]", "model.rope_scaling.type=yarn", "model.rope_scaling.factor=4",
       "model.rope_scaling.original_max_seq_len=32", "model.rope_scaling.mscale=1",
       "model.rope_scaling.mscale_all_dim=0.5", "model.rope_scaling.attention_factor=1.1",
       "model.attention=mla", "model.mla.q_lora_rank=24", "model.mla.kv_lora_rank=16",
       "model.mla.qk_nope_head_dim=8", "model.mla.qk_rope_head_dim=4", "model.mla.v_head_dim=8"});
  resolve_layout(r, 4);
  const std::vector<KeyInfo> keys = recipe_keys();
  ASSERT_GT(keys.size(), 70u);
  const YAML::Node resolved = YAML::Load(to_yaml(r));
  for (const KeyInfo& k : keys) {
    const YAML::Node v = at_path(resolved, k.path);
    EXPECT_TRUE(v.IsDefined()) << k.path << " is missing from recipe.resolved.yaml";
    if (k.path != "model.moe.first_dense_layers") {  // null beside a layer_pattern only
      EXPECT_FALSE(v.IsNull()) << k.path << " is written as null";
    }
  }
  // ... and reading it back gives the same values, key by key.
  Recipe again = parse_recipe(to_yaml(r), "resolved.yaml", {});
  resolve_layout(again, 4);
  const YAML::Node twice = YAML::Load(to_yaml(again));
  for (const KeyInfo& k : keys) {
    EXPECT_EQ(YAML::Dump(at_path(twice, k.path)), YAML::Dump(at_path(resolved, k.path))) << k.path;
  }
  EXPECT_EQ(again.model.sliding_window, 64);
  EXPECT_EQ(again.model.moe->capacity_factor, 1.5);
  EXPECT_EQ(again.parallel.pp_layers, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(again.data.val_paths, (std::vector<std::string>{"x"}));
}

TEST(Recipe, EveryKeyIsDescribedOnceWithTypeAndDefault) {
  std::set<std::string> seen;
  for (const KeyInfo& k : recipe_keys()) {
    EXPECT_TRUE(seen.insert(k.path).second) << k.path << " is declared twice";
    EXPECT_FALSE(k.type.empty()) << k.path;
    EXPECT_FALSE(k.fallback.empty()) << k.path;
    EXPECT_FALSE(k.meaning.empty()) << k.path << " has no meaning";
  }
  for (const char* key : {"model.vocab_size", "model.moe.top_k", "parallel.comm", "train.dtype",
                          "schedule.decay", "data.synthetic.seed", "run.dir"}) {
    EXPECT_EQ(seen.count(key), 1u) << key;
  }
}

TEST(Recipe, TheReadmeTableIsTheSchema) {
  std::ifstream in(test::source_path("README.md"));
  std::stringstream text;
  text << in.rdbuf();
  const std::string readme = text.str();
  const std::string begin =
      "<!-- recipe keys: generated by scripts/readme_recipe_table.sh; do not edit by hand -->\n";
  const std::string end = "<!-- end of recipe keys -->";
  const size_t a = readme.find(begin), b = readme.find(end);
  ASSERT_NE(a, std::string::npos) << "README.md lacks the table's first marker line";
  ASSERT_NE(b, std::string::npos) << "README.md lacks the table's last marker line";
  EXPECT_EQ(readme.substr(a + begin.size(), b - a - begin.size()), schema_markdown())
      << "README.md's recipe table differs from the schema: run scripts/readme_recipe_table.sh";
}

TEST(Recipe, ChoicesAreEnumsSpeltAsInRecipes) {
  const Recipe r =
      parse_recipe(kMinimal, "minimal.yaml",
                   {"schedule.decay=wsd", "model.moe.score=sigmoid", "parallel.comm=mpi",
                    "data.synthetic.branching=2", "model.rope_scaling.type=yarn",
                    "model.rope_scaling.factor=4", "model.rope_scaling.original_max_seq_len=64"});
  EXPECT_EQ(r.schedule.decay, LrDecay::kWsd);
  EXPECT_EQ(r.model.moe->score, RouterScore::kSigmoid);
  EXPECT_EQ(r.parallel.comm, CommKind::kMpi);
  EXPECT_EQ(r.model.rope_scaling.type, RopeScalingType::kYarn);
  EXPECT_EQ(name_of(r.schedule.decay), "wsd");
  EXPECT_EQ(name_of(r.train.device), "cpu");
  EXPECT_NE(to_yaml(r).find("    type: yarn\n"), std::string::npos);
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
