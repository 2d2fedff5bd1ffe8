// Published weights through the binary, against Hugging Face transformers' own classes: models
// that transformers made (tests/fixtures/hf, scripts/reference/hf_interop.py) are imported and
// evaluated at one rank and at tp2 pp2 ep2, and their validation loss equals transformers' on the
// same windows; import then export gives back every tensor bit for bit; an FP8 export (e4m3 with
// 128 x 128 block scales) imports back to exactly its dequantized values; a model fine-tuned with
// --init-from and exported loads in transformers with the loss tramontane's eval gives (when
// transformers is importable: TMT_TRANSFORMERS_PYTHON, see below); bad weights files are refused
// with exit 2 and one error line naming the file.
//
// timeout: 600
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "kernels/fp8.h"
#include "tests/support/run.h"
#include "tests/support/temp_dir.h"
#include "trainer/interop/safetensors.h"

namespace tmt {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kFixtures = test::source_path("tests/fixtures/hf");

json expected(const std::string& model) {
  std::ifstream in(kFixtures / "expected.json");
  return json::parse(in).at(model);
}

// The data and batch keys every test run here sets (16-token windows of the fixture's shards).
std::vector<std::string> data_sets(const std::string& data) {
  return {"--set", "data.source=shards",
          "--set", "data.paths=[" + (kFixtures / data / "train").string() + "]",
          "--set", "data.seq_len=16",
          "--set", "train.micro_batch=2",
          "--set", "train.global_batch=4",
          "--set", "log.every=1"};
}

test::RunResult tramontane(const std::vector<std::string>& args, int ranks = 1,
                           double timeout = 120) {
  return test::run_tramontane(args, ranks, timeout);
}

void import_model(const std::string& model, const std::string& data, const fs::path& run) {
  std::vector<std::string> args = {"import", (kFixtures / model).string(), "--out", run.string()};
  const auto sets = data_sets(data);
  args.insert(args.end(), sets.begin(), sets.end());
  const auto r = tramontane(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(fs::exists(run / "recipe.yaml"));
  ASSERT_TRUE(fs::exists(run / "checkpoints" / "step-0000000" / "index.h5"));
}

// The JSON line `tramontane eval` prints.
json eval(const fs::path& recipe, const std::vector<std::string>& extra = {}, int ranks = 1) {
  std::vector<std::string> args = {"eval", recipe.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  const auto r = tramontane(args, ranks, 300);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::string last = test::last_json_line(r.out);
  EXPECT_FALSE(last.empty()) << r.out;
  return last.empty() ? json::object() : json::parse(last);
}

void expect_close(double got, double want, double rel, const std::string& what) {
  EXPECT_LE(std::abs(got - want), rel * std::abs(want))
      << what << ": " << got << " vs " << want << " (rel " << std::abs(got - want) / want << ")";
}

void check_eval(const json& e, const json& want, const std::string& what) {
  ASSERT_TRUE(e.contains("val_loss")) << what << ": " << e.dump();
  expect_close(e["val_loss"].get<double>(), want["val_loss"].get<double>(), 1e-5, what);
  EXPECT_EQ(e["tokens"].get<int64_t>(), want["tokens"].get<int64_t>()) << what;
  EXPECT_EQ(e["step"].get<int64_t>(), 0) << what;
  expect_close(e["perplexity"].get<double>(), std::exp(e["val_loss"].get<double>()), 1e-12, what);
}

TEST(HfInterop, MixtralFromTransformersEvaluatesToItsLossAtOneRankAndTp2Pp2Ep2) {
  test::TempDir dir;
  const fs::path run = dir.path() / "run";
  import_model("mixtral", "data128", run);
  check_eval(eval(run / "recipe.yaml"), expected("mixtral"), "1 rank");
  check_eval(
      eval(run / "recipe.yaml",
           {"--set", "parallel.tp=2", "--set", "parallel.pp=2", "--set", "parallel.ep=2"}, 4),
      expected("mixtral"), "tp2 pp2 ep2");
}

TEST(HfInterop, MistralWithSlidingWindowAndTiedEmbeddingsEvaluatesToItsLoss) {
  test::TempDir dir;
  const fs::path run = dir.path() / "run";
  import_model("mistral", "data128", run);
  check_eval(eval(run / "recipe.yaml"), expected("mistral"), "1 rank");
  check_eval(eval(run / "recipe.yaml", {"--set", "parallel.tp=2"}, 2), expected("mistral"), "tp2");
}

TEST(HfInterop, MistralsOwnFormatEvaluatesToTheLossOfTransformersConversionOfIt) {
  test::TempDir dir;
  const fs::path run = dir.path() / "run";
  import_model("mistral-native", "data32k", run);
  check_eval(eval(run / "recipe.yaml"), expected("mistral-native"), "1 rank");
}

// name -> (dtype, shape, bytes) of every tensor in a model directory's safetensors files.
std::map<std::string, StoredTensor> tensors_of(const fs::path& dir) {
  std::map<std::string, StoredTensor> all;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    for (StoredTensor& t : SafetensorsFile::read(e.path().string()).tensors) {
      EXPECT_FALSE(all.count(t.name)) << t.name << " twice";
      all[t.name] = std::move(t);
    }
  }
  return all;
}

void expect_bit_identical(const fs::path& want_dir, const fs::path& got_dir) {
  const auto want = tensors_of(want_dir), got = tensors_of(got_dir);
  ASSERT_EQ(want.size(), got.size());
  for (const auto& [name, w] : want) {
    const auto it = got.find(name);
    ASSERT_NE(it, got.end()) << name << " not exported";
    EXPECT_EQ(it->second.dtype, w.dtype) << name;
    EXPECT_EQ(it->second.shape, w.shape) << name;
    EXPECT_TRUE(it->second.bytes == w.bytes) << name << " differs";
  }
}

TEST(HfInterop, ImportThenExportGivesBackEveryTensorBitForBit) {
  test::TempDir dir;
  import_model("mixtral", "data128", dir.path() / "mixtral");
  const fs::path out = dir.path() / "mixtral-hf";
  auto r = tramontane({"export", (dir.path() / "mixtral/checkpoints/step-0000000").string(),
                       "--out", out.string(), "--max-shard-size", "40000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_bit_identical(kFixtures / "mixtral", out);
  // Sharded as asked, with an index that lists every tensor in the file that holds it.
  std::ifstream in(out / "model.safetensors.index.json");
  const json index = json::parse(in);
  for (const auto& [name, file] : index["weight_map"].items()) {
    const auto f = SafetensorsFile::read((out / file.get<std::string>()).string());
    EXPECT_NE(f.find(name), nullptr) << name << " not in " << file;
    EXPECT_LE(fs::file_size(out / file.get<std::string>()), 40000u + 4096u) << file;
  }
  // The config says what transformers needs to rebuild the model.
  std::ifstream c1(kFixtures / "mixtral/config.json"), c2(out / "config.json");
  const json want = json::parse(c1), got = json::parse(c2);
  for (const char* key :
       {"architectures", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "num_key_value_heads", "num_local_experts", "num_experts_per_tok",
        "rms_norm_eps", "rope_theta", "tie_word_embeddings", "sliding_window"}) {
    EXPECT_EQ(got[key], want[key]) << key;
  }

  // fp32 weights, exported as fp32, with tied embeddings (no lm_head) in one file.
  import_model("mistral", "data128", dir.path() / "mistral");
  const fs::path out32 = dir.path() / "mistral-hf";
  r = tramontane({"export", (dir.path() / "mistral/checkpoints/step-0000000").string(), "--out",
                  out32.string(), "--dtype", "fp32"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out32 / "model.safetensors"));
  EXPECT_FALSE(fs::exists(out32 / "model.safetensors.index.json"));
  expect_bit_identical(kFixtures / "mistral", out32);
}

TEST(HfInterop, Fp8ExportHoldsE4m3BlocksThatImportReadsBack) {
  // export --dtype fp8: the linears' and experts' weights in e4m3 with one fp32 weight_scale_inv
  // per 128 x 128 block (amax / 448), the embedding, head, norms and router in bf16, and
  // quantization_config in config.json; import reads it back to e4m3 · scale exactly.
  test::TempDir dir;
  import_model("mixtral", "data128", dir.path() / "mixtral");
  const std::string ckpt = (dir.path() / "mixtral/checkpoints/step-0000000").string();
  const fs::path f32 = dir.path() / "f32", f8 = dir.path() / "fp8";
  ASSERT_EQ(tramontane({"export", ckpt, "--out", f32.string(), "--dtype", "fp32"}).exit_code, 0);
  auto r = tramontane({"export", ckpt, "--out", f8.string(), "--dtype", "fp8"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream c(f8 / "config.json");
  const json config = json::parse(c);
  EXPECT_EQ(config["quantization_config"]["quant_method"], "fp8");
  EXPECT_EQ(config["quantization_config"]["weight_block_size"], json::array({128, 128}));
  const auto ref = tensors_of(f32), q = tensors_of(f8);
  // What each exported tensor must read back as: e4m3 · scale (in float), or the bf16 rounding.
  std::map<std::string, std::vector<float>> want;
  int fp8_tensors = 0;
  for (const auto& [name, t] : ref) {
    ASSERT_TRUE(q.count(name)) << name;
    const StoredTensor& e = q.at(name);
    std::vector<float>& w = want[name];
    w.resize(static_cast<size_t>(t.numel()));
    const bool kept = name.find("embed") != std::string::npos || name == "lm_head.weight" ||
                      name.find("norm") != std::string::npos || name.ends_with(".gate.weight");
    if (kept || t.shape.size() != 2) {
      EXPECT_EQ(e.dtype, DType::kBF16) << name;
      for (int64_t i = 0; i < t.numel(); ++i)
        w[static_cast<size_t>(i)] = bf16_to_float(float_to_bf16(static_cast<float>(t.at(i))));
      continue;
    }
    ++fp8_tensors;
    EXPECT_EQ(e.dtype, DType::kF8E4M3) << name;
    ASSERT_TRUE(q.count(name + "_scale_inv")) << name;
    const StoredTensor& sc = q.at(name + "_scale_inv");
    const int64_t rows = t.shape[0], cols = t.shape[1], bc = (cols + 127) / 128;
    ASSERT_EQ(sc.shape, (std::vector<int64_t>{(rows + 127) / 128, bc})) << name;
    std::vector<double> amax(static_cast<size_t>(sc.numel()), 0.0);
    for (int64_t i = 0; i < t.numel(); ++i) {
      double& a = amax[static_cast<size_t>(i / cols / 128 * bc + i % cols / 128)];
      a = std::max(a, std::abs(t.at(i)));
    }
    for (int64_t b = 0; b < sc.numel(); ++b) {
      EXPECT_EQ(sc.at(b), static_cast<float>(amax[static_cast<size_t>(b)] / 448)) << name;
    }
    for (int64_t i = 0; i < t.numel(); ++i) {
      const auto s = static_cast<float>(sc.at(i / cols / 128 * bc + i % cols / 128));
      EXPECT_EQ(e.at(i), e4m3(t.at(i) / s)) << name << "[" << i << "]";
      w[static_cast<size_t>(i)] = static_cast<float>(e.at(i)) * s;
    }
  }
  EXPECT_GT(fp8_tensors, 10);
  // Imported (the quantization_config and the scales read) and written out again in fp32.
  const fs::path back = dir.path() / "back", back32 = dir.path() / "back32";
  r = tramontane({"import", f8.string(), "--out", back.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(tramontane({"export", (back / "checkpoints/step-0000000").string(), "--out",
                        back32.string(), "--dtype", "fp32"})
                .exit_code,
            0);
  const auto got = tensors_of(back32);
  for (const auto& [name, w] : want) {
    ASSERT_TRUE(got.count(name)) << name;
    const StoredTensor& g = got.at(name);
    size_t differing = 0;
    for (size_t i = 0; i < w.size(); ++i) differing += g.at(static_cast<int64_t>(i)) != w[i];
    EXPECT_EQ(differing, 0u) << name;
  }
}

// A python that imports transformers and torch: TMT_TRANSFORMERS_PYTHON (a command, e.g.
// "env PYTHONPATH=/opt/hf4 /usr/bin/python3"), else /usr/bin/python3 if it can.
std::vector<std::string> transformers_python() {
  std::vector<std::string> cmd;
  if (const char* p = std::getenv("TMT_TRANSFORMERS_PYTHON"); p != nullptr && *p != '\0') {
    std::istringstream words(p);
    for (std::string w; words >> w;) cmd.push_back(w);
  } else {
    cmd = {"/usr/bin/python3"};
  }
  auto probe = cmd;
  probe.insert(probe.end(), {"-c", "import torch, transformers"});
  if (test::run_command(probe, 120).exit_code != 0) return {};
  return cmd;
}

TEST(HfInterop, FineTunedFromImportedWeightsExportsToTransformersWithTheSameLoss) {
  test::TempDir dir;
  const fs::path imported = dir.path() / "imported", tuned = dir.path() / "tuned";
  import_model("mixtral", "data128", imported);
  std::vector<std::string> args = {"train",       (imported / "recipe.yaml").string(),
                                   "--init-from", (imported / "checkpoints/step-0000000").string(),
                                   "--set",       "run.dir=" + tuned.string(),
                                   "--set",       "train.steps=20",
                                   "--set",       "schedule.warmup_steps=2",
                                   "--set",       "optimizer.lr=1e-3",
                                   "--set",       "parallel.tp=2",
                                   "--set",       "parallel.pp=2",
                                   "--set",       "parallel.ep=2"};
  // Imported at one rank, fine-tuned at tp2 pp2 ep2, evaluated and exported at one rank.
  auto r = tramontane(args, 4, 300);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("a new run from those weights: a fresh optimizer, step 0"),
            std::string::npos)
      << r.out;
  const fs::path ckpt = tuned / "checkpoints/step-0000020";
  ASSERT_TRUE(fs::exists(ckpt / "index.h5"));
  // Run again: the run's own checkpoint wins over --init-from, so there is nothing left to do.
  r = tramontane(args, 4, 120);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("nothing to do"), std::string::npos) << r.out;

  const json e = eval(imported / "recipe.yaml", {"--resume", ckpt.string()}, 1);
  ASSERT_TRUE(e.contains("val_loss")) << e.dump();
  EXPECT_EQ(e["step"].get<int64_t>(), 20);
  EXPECT_GT(std::abs(e["val_loss"].get<double>() - expected("mixtral")["val_loss"].get<double>()),
            1e-3)
      << "training changed nothing";

  const fs::path hf = dir.path() / "tuned-hf";
  r = tramontane({"export", ckpt.string(), "--out", hf.string(), "--dtype", "fp32"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto python = transformers_python();
  if (python.empty()) {
    GTEST_SKIP() << "no python with torch and transformers (set TMT_TRANSFORMERS_PYTHON, "
                    "scripts/reference/README.md): the exported model was not loaded";
  }
  auto cmd = python;
  cmd.insert(cmd.end(), {test::source_path("scripts/reference/hf_interop.py"), "loss", hf.string(),
                         "--val", (kFixtures / "data128/val/shard-00000.bin").string()});
  const auto py = test::run_command(cmd, 300);
  ASSERT_EQ(py.exit_code, 0) << py.err;
  const json hf_loss = json::parse(py.out.substr(py.out.rfind('{')));
  expect_close(hf_loss["val_loss"].get<double>(), e["val_loss"].get<double>(), 1e-5,
               "transformers on the export vs tramontane eval");
  EXPECT_EQ(hf_loss["tokens"].get<int64_t>(), e["tokens"].get<int64_t>());
}

// Exit 2 and one line "error: ..." naming `file` (and containing `what`), nothing written.
void expect_refused(const test::RunResult& r, const std::string& file, const std::string& what) {
  EXPECT_EQ(r.exit_code, 2) << what << "\n" << r.err;
  const auto errors = test::error_lines(r.err);
  ASSERT_EQ(errors.size(), 1u) << what << "\n" << r.err;
  EXPECT_NE(errors[0].find(file), std::string::npos) << errors[0] << " lacks " << file;
  EXPECT_NE(errors[0].find(what), std::string::npos) << errors[0] << " lacks " << what;
  EXPECT_EQ(r.err.find("internal error"), std::string::npos) << r.err;
}

// The header of a safetensors file, edited by `edit`, written back at its own length.
void edit_header(const fs::path& file, const std::function<void(json&)>& edit) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  f.read(header.data(), static_cast<std::streamsize>(n));
  json j = json::parse(header);
  edit(j);
  std::string text = j.dump();
  ASSERT_LE(text.size(), n);
  text.append(n - text.size(), ' ');
  f.seekp(8);
  f.write(text.data(), static_cast<std::streamsize>(n));
}

TEST(HfInterop, BadWeightsAreRefusedWithOneErrorLineNamingTheFile) {
  test::TempDir dir;
  int n = 0;
  // A copy of a fixture model to damage, and the import of it.
  const auto copy = [&](const std::string& model) {
    const fs::path d = dir.path() / fmt::format("case{}", n++);
    fs::copy(kFixtures / model, d);
    return d;
  };
  const auto import = [&](const fs::path& src) {
    return tramontane({"import", src.string(), "--out", (src.string() + "-run")});
  };
  const auto rewrite_json = [](const fs::path& p, const std::function<void(json&)>& edit) {
    std::ifstream in(p);
    json j = json::parse(in);
    in.close();
    edit(j);
    std::ofstream(p) << j.dump(1);
  };

  fs::path src = copy("mistral");
  rewrite_json(src / "config.json", [](json& j) { j["architectures"] = {"LlamaForCausalLM"}; });
  expect_refused(import(src), "config.json", "LlamaForCausalLM is not supported");

  src = copy("mistral");
  rewrite_json(src / "config.json", [](json& j) { j["intermediate_size"] = 60; });
  expect_refused(import(src), "model.safetensors",
                 "model.layers.0.mlp.gate_proj.weight is [64, 32]");

  src = copy("mistral");
  {
    SafetensorsFile f = SafetensorsFile::read((src / "model.safetensors").string());
    f.tensors.erase(std::remove_if(f.tensors.begin(), f.tensors.end(),
                                   [](const StoredTensor& t) {
                                     return t.name == "model.layers.1.self_attn.k_proj.weight";
                                   }),
                    f.tensors.end());
    f.write((src / "model.safetensors").string());
  }
  expect_refused(import(src), "model.safetensors",
                 "no tensor model.layers.1.self_attn.k_proj.weight");

  src = copy("mistral");
  fs::resize_file(src / "model.safetensors", fs::file_size(src / "model.safetensors") - 100);
  expect_refused(import(src), "model.safetensors", "past the end of the file");

  // The header lies: the last tensor's end 4 bytes short of its shape, or its data moved 4 bytes
  // into the tensor before it.
  const auto last_tensor = [](const json& j) {
    std::string last;
    uint64_t begin = 0;
    for (const auto& [name, t] : j.items()) {
      if (name != "__metadata__" && t["data_offsets"][0].get<uint64_t>() >= begin) {
        begin = t["data_offsets"][0].get<uint64_t>();
        last = name;
      }
    }
    return last;
  };
  std::string lied;
  src = copy("mistral");
  edit_header(src / "model.safetensors", [&](json& j) {
    lied = last_tensor(j);
    j[lied]["data_offsets"][1] = j[lied]["data_offsets"][1].get<uint64_t>() - 4;
  });
  expect_refused(import(src), "model.safetensors", "tensor " + lied + ": data_offsets");
  src = copy("mistral");
  edit_header(src / "model.safetensors", [&](json& j) {
    lied = last_tensor(j);
    for (int i : {0, 1})
      j[lied]["data_offsets"][i] = j[lied]["data_offsets"][i].get<uint64_t>() - 4;
  });
  expect_refused(import(src), "model.safetensors", "overlaps");

  src = copy("mixtral");
  fs::remove(src / "model-00002-of-00003.safetensors");
  expect_refused(import(src), "model-00002-of-00003.safetensors", "missing");

  src = copy("mistral");
  {
    std::ofstream garbage(src / "model.safetensors", std::ios::trunc | std::ios::binary);
    const std::string header = "{not json at all";
    const uint64_t length = header.size();
    garbage.write(reinterpret_cast<const char*>(&length), 8);
    garbage << header;
  }
  expect_refused(import(src), "model.safetensors", "not JSON");

  // A run directory that already holds a run loses nothing.
  const fs::path run = dir.path() / "run";
  import_model("mistral", "data128", run);
  const auto before = fs::last_write_time(run / "recipe.yaml");
  expect_refused(tramontane({"import", (kFixtures / "mistral").string(), "--out", run.string()}),
                 run.string(), "already holds a run");
  EXPECT_EQ(fs::last_write_time(run / "recipe.yaml"), before);
  // The weights decide the model's shape.
  expect_refused(tramontane({"import", (kFixtures / "mistral").string(), "--out",
                             (dir.path() / "other").string(), "--set", "model.n_layers=3"}),
                 "--set model.n_layers=3", "the weights decide the model's shape");
  // --resume and --init-from do not go together; eval needs validation data.
  expect_refused(
      tramontane({"train", (run / "recipe.yaml").string(), "--resume", "a", "--init-from", "b"}),
      "--init-from", "give one");
  expect_refused(tramontane({"eval", "--set", "parallel.tp=1", "--set", "parallel.pp=1", "--set",
                             "parallel.ep=1", "--set", "run.dir=" + (dir.path() / "x").string()}),
                 "data", "eval reads a validation split");
  // A model no transformers class holds (the default recipe's dense first layer) is not exported.
  auto r = tramontane({"train", "--set", "parallel.tp=1", "--set", "parallel.pp=1", "--set",
                       "parallel.ep=1", "--set", "train.steps=1", "--set",
                       "run.dir=" + (dir.path() / "tiny").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_refused(tramontane({"export", (dir.path() / "tiny/checkpoints/step-0000001").string(),
                             "--out", (dir.path() / "tiny-hf").string()}),
                 "model.moe.first_dense_layers", "no Hugging Face class holds this model");
  EXPECT_FALSE(fs::exists(dir.path() / "tiny-hf"));
}

}  // namespace
}  // namespace tmt
