// DeepSeek-V3 and Mistral 4 against transformers 5's own DeepseekV3ForCausalLM and
// Mistral4ForCausalLM (tests/fixtures/hf5/mla, scripts/reference/hf5_mla.py): multi-head latent
// attention with and without the query latent, interleaved and rotate-half RoPE, YaRN with
// mscale_all_dim in the softmax scale, Llama 4's query scaling, a dense first layer, sigmoid routing
// with e_score_correction_bias and softmax routing, both group-limited, shared experts, per-expert
// and fused expert tensors. The config is read and the tensors mapped by the interop API
// (trainer/interop/published.h); the loss of one batch and the gradient of every weight equal
// transformers' float64 ones to 1e-5 (relative, by norm) in fp32; `tramontane import` then `eval`
// at 1 rank, tp2 and ep2 give transformers' loss on every validation window; export gives back
// the config and every tensor bit for bit (in bf16 the expert bias stays f32, as transformers
// keeps it); a config tramontane cannot hold is refused naming its key.
//
// timeout: 900
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/run.h"
#include "tests/support/temp_dir.h"
#include "trainer/interop/published.h"
#include "trainer/interop/safetensors.h"
#include "trainer/model/model.h"

namespace tmt {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kFixtures = test::source_path("tests/fixtures/hf5/mla");

json read_json(const fs::path& path) {
  std::ifstream in(path);
  return json::parse(in);
}

json expected(const std::string& model) { return read_json(kFixtures / "expected.json").at(model); }

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

class MlaParity : public ::testing::TestWithParam<std::string> {};

TEST_P(MlaParity, LossAndEveryGradientMatchTransformers) {
  const fs::path dir = kFixtures / GetParam();
  const bool deepseek = GetParam() == "deepseek_v3";
  PublishedConfig cfg = read_published_config(dir);
  ASSERT_EQ(cfg.architecture, deepseek ? "DeepseekV3ForCausalLM" : "Mistral4ForCausalLM");
  ModelConfig& m = cfg.model;
  ASSERT_TRUE(m.is_mla());
  EXPECT_EQ(m.mla->q_lora_rank, deepseek ? 0 : 12);
  EXPECT_EQ(m.mla->kv_lora_rank, 16);
  EXPECT_EQ(m.rope_interleaved, deepseek);
  EXPECT_EQ(m.partial_rotary_factor, 1.0);
  EXPECT_EQ(m.rope_scaling.type, RopeScalingType::kYarn);
  EXPECT_EQ(m.rope_scaling.mscale_all_dim, deepseek ? 0.7 : 0.5);
  EXPECT_EQ(m.rope_scaling.llama_4_beta, deepseek ? 0.0 : 0.1);
  ASSERT_TRUE(m.moe);
  EXPECT_EQ(m.moe->score, deepseek ? RouterScore::kSigmoid : RouterScore::kSoftmax);
  EXPECT_EQ(m.moe->expert_bias(), deepseek);
  EXPECT_EQ(m.moe->first_dense_layers, 1);
  EXPECT_EQ(m.moe->n_shared_experts, deepseek ? 1 : 2);
  EXPECT_EQ(m.moe->n_groups, deepseek ? 4 : 2);
  EXPECT_DOUBLE_EQ(m.moe->routed_scaling_factor, deepseek ? 2.5 : 1.5);
  // transformers' loss has no balance terms: neither has this one.
  m.moe->aux_loss_coeff = m.moe->z_loss_coeff = m.moe->seq_aux_loss_coeff = 0;

  const SafetensorsFile weights = SafetensorsFile::read((dir / "model.safetensors").string());
  SafetensorsFile ref = SafetensorsFile::read((dir / "reference.safetensors").string());
  const int64_t batch = 2, seq = 16;
  Model model(m, {.micro_batch = batch, .seq_len = seq, .seed = 0}, Context{});
  ParamStore& params = model.params();
  const auto param = [&](const std::string& name) -> Param& {
    for (Param& p : params.all()) {
      if (p.spec.name == name) return p;
    }
    ADD_FAILURE() << "no parameter " << name;
    return params.all().front();
  };
  const std::vector<TensorMapping> mappings = tensor_mappings(m, PublishedFormat::kHuggingFace);
  ASSERT_EQ(mappings.size(), weights.tensors.size());
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
    if (t.param.ends_with(".moe.expert_bias")) {  // a buffer: it steers, it has no gradient
      EXPECT_EQ(g, nullptr);
      continue;
    }
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

INSTANTIATE_TEST_SUITE_P(Fixtures, MlaParity, ::testing::Values("deepseek_v3", "mistral4"));

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

std::vector<std::string> import_args(const fs::path& source, const fs::path& run) {
  return {"import", source.string(),
          "--out",  run.string(),
          "--set",  "data.source=shards",
          "--set",  "data.paths=[" + (kFixtures / "data/train").string() + "]",
          "--set",  "data.seq_len=16",
          "--set",  "train.micro_batch=2",
          "--set",  "train.global_batch=4"};
}

class MlaEval : public ::testing::TestWithParam<std::string> {};

TEST_P(MlaEval, ImportedEvaluatesToTransformersLossAtOneRankTp2AndEp2ThenExportsBack) {
  const std::string name = GetParam();
  test::TempDir tmp;
  const fs::path run = tmp.path() / "run";
  auto r = tramontane(import_args(kFixtures / name, run));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  check_eval(eval(run / "recipe.yaml"), expected(name), name + " 1 rank");
  check_eval(eval(run / "recipe.yaml", {"--set", "parallel.tp=2"}, 2), expected(name),
             name + " tp2");
  check_eval(eval(run / "recipe.yaml", {"--set", "parallel.ep=2"}, 2), expected(name),
             name + " ep2");

  const fs::path out = tmp.path() / "hf";
  r = tramontane({"export", (run / "checkpoints/step-0000000").string(), "--out", out.string(),
                  "--dtype", "fp32"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json want = read_json(kFixtures / name / "config.json");
  const json got = read_json(out / "config.json");
  for (const char* key : {"architectures",
                          "model_type",
                          "hidden_size",
                          "intermediate_size",
                          "moe_intermediate_size",
                          "num_attention_heads",
                          "num_key_value_heads",
                          "head_dim",
                          "q_lora_rank",
                          "kv_lora_rank",
                          "qk_nope_head_dim",
                          "qk_rope_head_dim",
                          "v_head_dim",
                          "n_routed_experts",
                          "n_shared_experts",
                          "num_experts_per_tok",
                          "n_group",
                          "topk_group",
                          "first_k_dense_replace",
                          "routed_scaling_factor",
                          "norm_topk_prob",
                          "rope_interleave",
                          "tie_word_embeddings"})
    EXPECT_EQ(got[key], want[key]) << key;
  for (const auto& [key, value] : want["rope_parameters"].items()) {
    // The imported recipe's max_seq_len follows data.seq_len (import writes it as derived).
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
    EXPECT_EQ(u->shape, t.shape) << t.name;
    EXPECT_TRUE(u->bytes == t.bytes) << t.name;
  }

  // In bf16 the expert bias stays f32, as transformers keeps it: rounded, it would move the
  // routing.
  const fs::path bf16 = tmp.path() / "hf-bf16";
  r = tramontane({"export", (run / "checkpoints/step-0000000").string(), "--out", bf16.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const SafetensorsFile c = SafetensorsFile::read((bf16 / "model.safetensors").string());
  int biases = 0;
  for (const StoredTensor& t : c.tensors) {
    const bool bias = t.name.ends_with(".e_score_correction_bias");
    EXPECT_EQ(t.dtype, bias ? DType::kF32 : DType::kBF16) << t.name;
    if (bias) {
      EXPECT_TRUE(t.bytes == a.find(t.name)->bytes) << t.name;
      ++biases;
    }
  }
  EXPECT_EQ(biases, name == "deepseek_v3" ? 2 : 0);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, MlaEval, ::testing::Values("deepseek_v3", "mistral4"));

// A config key tramontane cannot express: one error line naming the file and the key, exit 2.
TEST(MlaImport, WhatTramontaneCannotHoldIsRefusedNamingTheKey) {
  const std::vector<std::pair<std::string, json>> cases = {
      {"norm_topk_prob", false},
      {"attention_bias", true},
      {"num_key_value_heads", 2},
  };
  for (const auto& [key, value] : cases) {
    test::TempDir tmp;
    const fs::path src = tmp.path() / "src";
    fs::copy(kFixtures / "deepseek_v3", src);
    json c = read_json(src / "config.json");
    c[key] = value;
    std::ofstream(src / "config.json") << c.dump(1);
    const auto r = tramontane(import_args(src, tmp.path() / "run"));
    EXPECT_EQ(r.exit_code, 2) << key;
    const auto errors = test::error_lines(r.err);
    ASSERT_EQ(errors.size(), 1u) << key << ": " << r.err;
    EXPECT_NE(errors[0].find("config.json: " + key + ":"), std::string::npos) << errors[0];
  }
  // Mistral 4's rotary fraction must be the latent attention's rope part.
  test::TempDir tmp;
  const fs::path src = tmp.path() / "src";
  fs::copy(kFixtures / "mistral4", src);
  json c = read_json(src / "config.json");
  c["rope_parameters"]["partial_rotary_factor"] = 0.5;
  std::ofstream(src / "config.json") << c.dump(1);
  const auto r = tramontane(import_args(src, tmp.path() / "run"));
  EXPECT_EQ(r.exit_code, 2);
  const auto errors = test::error_lines(r.err);
  ASSERT_EQ(errors.size(), 1u) << r.err;
  EXPECT_NE(errors[0].find("rope_parameters: partial_rotary_factor: expected qk_rope_head_dim"),
            std::string::npos)
      << errors[0];
}

}  // namespace
}  // namespace tmt
