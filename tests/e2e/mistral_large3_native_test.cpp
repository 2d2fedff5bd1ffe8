// Mistral Large 3 in Mistral's own format, full precision and FP8 (tests/fixtures/hf5/large3,
// scripts/reference/mistral_large3_native.py): params.json's latent attention, moe, yarn and
// llama_4_scaling, the native tensor names, e4m3 weights times their qscale_weight (per 128 x 128
// block with the edge blocks cut short, or per tensor) dequantized on import. Each imported model
// evaluates to transformers' Mistral4ForCausalLM loss of the same weights (the FP8 one: of its
// dequantized weights) to 1e-5 on every validation window; export of the FP8 import gives every
// quantized tensor within e4m3's rounding of the full-precision one, 2^-4 |w| + 2^-10 s (s the
// largest scale of the tensor: a normal e4m3 value keeps 3 mantissa bits, the subnormals are
// spaced 2^-9 s), and every other tensor bit for bit; FP8 tensors without params.json's
// quantization are refused naming the file and tensor.
//
// timeout: 600
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/run.h"
#include "tests/support/temp_dir.h"
#include "trainer/interop/published.h"
#include "trainer/interop/safetensors.h"

namespace tmt {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kFixtures = test::source_path("tests/fixtures/hf5/large3");
const fs::path kData = test::source_path("tests/fixtures/hf5/mla/data");

json read_json(const fs::path& path) {
  std::ifstream in(path);
  return json::parse(in);
}

test::RunResult tramontane(const std::vector<std::string>& args, int ranks = 1) {
  return test::run_tramontane(args, ranks, 300);
}

test::RunResult import(const fs::path& source, const fs::path& run) {
  return tramontane({"import", source.string(), "--out", run.string(), "--set",
                     "data.source=shards", "--set",
                     "data.paths=[" + (kData / "train").string() + "]", "--set", "data.seq_len=16",
                     "--set", "train.micro_batch=2", "--set", "train.global_batch=4"});
}

double eval_loss(const fs::path& recipe, const json& want, const std::string& what) {
  const auto r = tramontane({"eval", recipe.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::string last = test::last_json_line(r.out);
  if (last.empty()) return NAN;
  const json e = json::parse(last);
  const double got = e["val_loss"].get<double>(), w = want["val_loss"].get<double>();
  EXPECT_LE(std::fabs(got - w), 1e-5 * w) << what << ": " << got << " vs " << w;
  EXPECT_EQ(e["tokens"].get<int64_t>(), want["tokens"].get<int64_t>()) << what;
  std::printf("  %s: val_loss %.9f vs transformers %.9f (rel %.2e)\n", what.c_str(), got, w,
              std::fabs(got - w) / w);
  return got;
}

TEST(MistralLarge3Native, ParamsJsonReadsAsLatentAttentionMoe) {
  const PublishedConfig cfg = read_published_config(kFixtures / "fp8");
  EXPECT_EQ(cfg.format, PublishedFormat::kMistral);
  EXPECT_TRUE(cfg.fp8);
  const ModelConfig& m = cfg.model;
  ASSERT_TRUE(m.is_mla());
  EXPECT_EQ(m.mla->q_lora_rank, 12);
  EXPECT_EQ(m.mla->kv_lora_rank, 16);
  EXPECT_TRUE(m.rope_interleaved);
  EXPECT_EQ(m.rope_scaling.type, RopeScalingType::kYarn);
  EXPECT_EQ(m.rope_scaling.mscale_all_dim, 1.0);
  EXPECT_DOUBLE_EQ(m.rope_scaling.llama_4_beta, 0.1);
  ASSERT_TRUE(m.moe);
  EXPECT_EQ(m.moe->score, RouterScore::kSoftmax);
  EXPECT_EQ(m.moe->first_dense_layers, 1);
  EXPECT_EQ(m.moe->n_shared_experts, 1);
  EXPECT_EQ(m.ffn_hidden, 160);
  EXPECT_FALSE(read_published_config(kFixtures / "full").fp8);
}

TEST(MistralLarge3Native, Fp8ImportEvaluatesToItsDequantizedWeightsWithinE4m3OfFullPrecision) {
  const json want = read_json(kFixtures / "expected.json");
  test::TempDir tmp;
  double loss[2];
  for (int i = 0; i < 2; ++i) {
    const std::string name = i == 0 ? "full" : "fp8";
    const fs::path run = tmp.path() / name;
    const auto r = import(kFixtures / name, run);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    loss[i] = eval_loss(run / "recipe.yaml", want[name], name);
    const auto e = tramontane({"export", (run / "checkpoints/step-0000000").string(), "--out",
                               (tmp.path() / (name + "-hf")).string(), "--dtype", "fp32"});
    ASSERT_EQ(e.exit_code, 0) << e.err;
  }
  // transformers' FP8 and full losses differ (the rounding changed the model) by what ours do.
  EXPECT_GT(std::fabs(loss[1] - loss[0]), 1e-4);
  EXPECT_NEAR(loss[1] - loss[0],
              want["fp8"]["val_loss"].get<double>() - want["full"]["val_loss"].get<double>(), 1e-5);

  const SafetensorsFile full =
      SafetensorsFile::read((tmp.path() / "full-hf/model.safetensors").string());
  const SafetensorsFile fp8 =
      SafetensorsFile::read((tmp.path() / "fp8-hf/model.safetensors").string());
  ASSERT_EQ(full.tensors.size(), fp8.tensors.size());
  int quantized = 0;
  for (const StoredTensor& a : full.tensors) {
    const StoredTensor* b = fp8.find(a.name);
    ASSERT_NE(b, nullptr) << a.name;
    ASSERT_EQ(a.shape, b->shape) << a.name;
    const bool projection =
        a.name.find("_proj") != std::string::npos && a.name.find("layernorm") == std::string::npos;
    if (!projection) {
      EXPECT_TRUE(a.bytes == b->bytes) << a.name << " is not quantized: bit for bit";
      continue;
    }
    ++quantized;
    double amax = 0;
    for (int64_t i = 0; i < a.numel(); ++i) amax = std::max(amax, std::fabs(a.at(i)));
    const double s = amax / 448.0;
    double worst = 0, changed = 0;
    int64_t worst_at = -1;
    for (int64_t i = 0; i < a.numel(); ++i) {
      const double err = std::fabs(b->at(i) - a.at(i));
      const double ratio = err / (std::ldexp(std::fabs(a.at(i)), -4) + std::ldexp(s, -10));
      if (ratio > worst) {
        worst = ratio;
        worst_at = i;
      }
      changed += err > 0;
    }
    EXPECT_LE(worst, 1.0) << a.name << " at " << worst_at << ": " << b->at(worst_at) << " vs "
                          << a.at(worst_at);
    EXPECT_GT(changed, 0) << a.name << " came back unrounded";
  }
  EXPECT_EQ(quantized, 3 * 5 + 3 + 2 * (2 + 3));  // attention x 3 layers, dense, experts, shared
}

TEST(MistralLarge3Native, Fp8WithoutQuantizationIsRefusedNamingTheTensor) {
  test::TempDir tmp;
  const fs::path src = tmp.path() / "src";
  fs::copy(kFixtures / "fp8", src);
  json p = read_json(src / "params.json");
  p.erase("quantization");
  std::ofstream(src / "params.json") << p.dump(1);
  const auto r = import(src, tmp.path() / "run");
  EXPECT_EQ(r.exit_code, 2);
  const auto errors = test::error_lines(r.err);
  ASSERT_EQ(errors.size(), 1u) << r.err;
  EXPECT_NE(errors[0].find("consolidated.safetensors: tensor "), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("F8_E4M3 with params.json's quantization"), std::string::npos)
      << errors[0];
}

}  // namespace
}  // namespace tmt
