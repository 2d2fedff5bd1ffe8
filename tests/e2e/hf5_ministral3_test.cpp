// Ministral 3 against transformers 5's own Ministral3ForCausalLM (tests/fixtures/hf5/ministral3,
// scripts/reference/hf5_ministral3.py): YaRN with a ramp inside the head and an attention factor,
// Llama 4's query scaling stepping inside the sequence, GQA, tied and untied embeddings. The
// config is read and the tensors mapped by the interop API (trainer/interop/published.h); the loss
// of one batch and the gradient of every weight equal transformers' float64 ones to 1e-5 (relative,
// by norm) in fp32; `tramontane import` then `eval` at 1 rank and tp2 give transformers' loss on
// every validation window; export gives back the config's RoPE settings and every tensor bit for
// bit.
//
// timeout: 600
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/support/run.h"
#include "tests/support/temp_dir.h"
#include "trainer/interop/published.h"
#include "trainer/interop/safetensors.h"
#include "trainer/model/model.h"

namespace tmt {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kFixtures = test::source_path("tests/fixtures/hf5/ministral3");

json expected(const std::string& model) {
  std::ifstream in(kFixtures / "expected.json");
  return json::parse(in).at(model);
}

// Where a published tensor lies in its (one-rank) parameter: the mappings offset leading dims only,
// so the block is contiguous.
int64_t block_start(const Tensor& param, const TensorMapping& t) {
  int64_t start = 0, stride = 1;
  for (int64_t i = param.rank(); i-- > 0;) {
    start += t.offset[static_cast<size_t>(i)] * stride;
    stride *= param.size(i);
  }
  return start;
}

class Ministral3Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(Ministral3Parity, LossAndEveryGradientMatchTransformers) {
  const fs::path dir = kFixtures / GetParam();
  const PublishedConfig cfg = read_published_config(dir);
  ASSERT_EQ(cfg.architecture, "Ministral3ForCausalLM");
  const RopeScaling& rs = cfg.model.rope_scaling;
  EXPECT_EQ(rs.type, RopeScalingType::kYarn);
  EXPECT_DOUBLE_EQ(rs.factor, 4.0);
  EXPECT_GT(rs.llama_4_beta, 0.0);
  EXPECT_EQ(rs.llama_4_original_max_seq_len, rs.original_max_seq_len);

  const SafetensorsFile weights = SafetensorsFile::read((dir / "model.safetensors").string());
  SafetensorsFile ref = SafetensorsFile::read((dir / "reference.safetensors").string());
  const int64_t batch = 2, seq = 16;
  Model model(cfg.model, {.micro_batch = batch, .seq_len = seq, .seed = 0}, Context{});
  ParamStore& params = model.params();
  const auto param = [&](const std::string& name) -> Param& {
    for (Param& p : params.all()) {
      if (p.spec.name == name) return p;
    }
    ADD_FAILURE() << "no parameter " << name;
    return params.all().front();
  };
  const std::vector<TensorMapping> mappings =
      tensor_mappings(cfg.model, PublishedFormat::kHuggingFace);
  for (const TensorMapping& t : mappings) {
    const StoredTensor* w = weights.find(t.published);
    ASSERT_NE(w, nullptr) << t.published;
    ASSERT_EQ(w->shape, t.shape) << t.published;
    ASSERT_EQ(w->dtype, DType::kF32) << t.published;
    Param& p = param(t.param);
    std::memcpy(p.value.ptr<float>() + block_start(p.value, t), w->bytes.data(), w->bytes.size());
  }

  StoredTensor* tokens = const_cast<StoredTensor*>(ref.find("tokens"));
  StoredTensor* targets = const_cast<StoredTensor*>(ref.find("targets"));
  ASSERT_EQ(tokens->shape, (std::vector<int64_t>{batch, seq}));
  params.zero_grads();
  const double n = static_cast<double>(batch * seq);
  const LossParts parts = model.forward_backward({tokens->view(), targets->view()}, 1.0 / n, 1.0);
  const double loss = parts.lm_loss_sum / static_cast<double>(parts.lm_tokens);
  const double want_loss = ref.find("loss")->at(0);
  const double loss_err = std::fabs(loss - want_loss) / std::fabs(want_loss);
  EXPECT_LT(loss_err, 1e-5) << loss << " vs " << want_loss;

  double worst = 0;
  std::string worst_name;
  size_t checked = 0;
  for (const TensorMapping& t : mappings) {
    const StoredTensor* g = ref.find("grad." + t.published);
    ASSERT_NE(g, nullptr) << "grad." << t.published;
    const Param& p = param(t.param);
    const float* got = p.grad.ptr<const float>() + block_start(p.grad, t);
    double diff = 0, norm = 0;
    for (int64_t i = 0; i < g->numel(); ++i) {
      const double want = g->at(i);
      diff += (got[i] - want) * (got[i] - want);
      norm += want * want;
    }
    const double rel = std::sqrt(diff / norm);
    EXPECT_LT(rel, 1e-5) << "grad." << t.published << " (" << t.param << ")";
    if (rel > worst) {
      worst = rel;
      worst_name = t.published;
    }
    ++checked;
  }
  EXPECT_EQ(checked + 4, ref.tensors.size());  // + tokens, targets, loss, logits
  std::printf("  %s: loss %.9f vs %.9f (rel %.2e); %zu gradients, worst rel by norm %.2e (%s)\n",
              GetParam().c_str(), loss, want_loss, loss_err, checked, worst, worst_name.c_str());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Ministral3Parity, ::testing::Values("untied", "tied"));

test::RunResult tramontane(const std::vector<std::string>& args, int ranks = 1) {
  return test::run_tramontane(args, ranks, 300);
}

// The JSON line `tramontane eval` prints.
json eval(const fs::path& recipe, const std::vector<std::string>& extra = {}, int ranks = 1) {
  std::vector<std::string> args = {"eval", recipe.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  const auto r = tramontane(args, ranks);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::string last = test::last_json_line(r.out);
  return last.empty() ? json::object() : json::parse(last);
}

void check_eval(const json& e, const json& want, const std::string& what) {
  ASSERT_TRUE(e.contains("val_loss")) << what << ": " << e.dump();
  const double got = e["val_loss"].get<double>(), w = want["val_loss"].get<double>();
  EXPECT_LE(std::fabs(got - w), 1e-5 * w) << what << ": " << got << " vs " << w;
  EXPECT_EQ(e["tokens"].get<int64_t>(), want["tokens"].get<int64_t>()) << what;
  std::printf("  %s: val_loss %.9f vs transformers %.9f (rel %.2e)\n", what.c_str(), got, w,
              std::fabs(got - w) / w);
}

class Ministral3Eval : public ::testing::TestWithParam<std::string> {};

TEST_P(Ministral3Eval, ImportedEvaluatesToTransformersLossAtOneRankAndTp2ThenExportsBack) {
  const std::string name = GetParam();
  test::TempDir tmp;
  const fs::path run = tmp.path() / "run";
  auto r = tramontane(
      {"import", (kFixtures / name).string(), "--out", run.string(), "--set", "data.source=shards",
       "--set", "data.paths=[" + (kFixtures / "data/train").string() + "]", "--set",
       "data.seq_len=16", "--set", "train.micro_batch=2", "--set", "train.global_batch=4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  check_eval(eval(run / "recipe.yaml"), expected(name), name + " 1 rank");
  check_eval(eval(run / "recipe.yaml", {"--set", "parallel.tp=2"}, 2), expected(name),
             name + " tp2");

  const fs::path out = tmp.path() / "hf";
  r = tramontane({"export", (run / "checkpoints/step-0000000").string(), "--out", out.string(),
                  "--dtype", "fp32"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream c1(kFixtures / name / "config.json"), c2(out / "config.json");
  const json want = json::parse(c1), got = json::parse(c2);
  for (const char* key : {"architectures", "model_type", "hidden_size", "num_key_value_heads",
                          "head_dim", "tie_word_embeddings"})
    EXPECT_EQ(got[key], want[key]) << key;
  const json& rope = want["rope_parameters"];
  for (const auto& [key, value] : rope.items()) {
    // mscale without mscale_all_dim does nothing in transformers: import drops it. The imported
    // recipe's max_seq_len follows data.seq_len (import writes it as derived), so
    // max_position_embeddings does too; YaRN's factor is explicit and does not depend on it.
    if (key == "mscale" && !rope.contains("mscale_all_dim")) continue;
    if (key == "max_position_embeddings") continue;
    EXPECT_EQ(got["rope_parameters"][key], value) << "rope_parameters." << key;
  }
  const SafetensorsFile a =
      SafetensorsFile::read((kFixtures / name / "model.safetensors").string());
  const SafetensorsFile b = SafetensorsFile::read((out / "model.safetensors").string());
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const StoredTensor& t : a.tensors) {
    const StoredTensor* u = b.find(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    EXPECT_TRUE(u->bytes == t.bytes) << t.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Ministral3Eval, ::testing::Values("untied", "tied"));

}  // namespace
}  // namespace tmt
