// The command line as a user meets it: every malformed recipe of tests/trainer/bad_recipes/ and
// every bad flag ends with exit 2 and exactly one `error:` line naming the file and line (or the
// flag) and the key — no crash, no stack trace, no hang; --help documents every command and flag.
// timeout: 300
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "kernels/base/device.h"
#include "tests/support/run.h"
#include "trainer/recipe/recipe.h"

namespace tmt {
namespace {

namespace fs = std::filesystem;

struct BadRecipe {
  std::string path;
  int world = 1;
  std::vector<std::string> sets;
  std::string expect;
};

BadRecipe read_bad_recipe(const fs::path& p) {
  BadRecipe b;
  b.path = p.string();
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# world:", 0) == 0) b.world = std::stoi(line.substr(8));
    if (line.rfind("# set:", 0) == 0) b.sets.push_back(line.substr(line.find_first_not_of(' ', 6)));
    if (line.rfind("# expect:", 0) == 0) b.expect = line.substr(line.find_first_not_of(' ', 9));
  }
  return b;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> lines;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

// Exit 2, nothing on stdout, one stderr line that starts with "error: " and contains `expect`.
void expect_one_error(const test::RunResult& r, const std::string& expect,
                      const std::string& what) {
  EXPECT_FALSE(r.timed_out) << what;
  EXPECT_EQ(r.exit_code, 2) << what << "\nstderr: " << r.err;
  const auto lines = lines_of(r.err);
  ASSERT_EQ(lines.size(), 1u) << what << "\nstderr: " << r.err;
  EXPECT_EQ(lines[0].rfind("error: ", 0), 0u) << what << ": " << lines[0];
  EXPECT_NE(lines[0].find(expect), std::string::npos)
      << what << ": '" << lines[0] << "' lacks '" << expect << "'";
  EXPECT_TRUE(r.out.empty()) << what << "\nstdout: " << r.out;
}

TEST(Cli, EveryBadRecipeGivesOneErrorLineAndExit2) {
  const fs::path dir = test::source_path("tests/trainer/bad_recipes");
  int count = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    const BadRecipe b = read_bad_recipe(entry.path());
    ASSERT_FALSE(b.expect.empty()) << b.path << " has no '# expect:' line";
    std::vector<std::string> argv = {test::tramontane_binary(), "check", b.path, "--world",
                                     std::to_string(b.world)};
    for (const auto& s : b.sets) {
      argv.push_back("--set");
      argv.push_back(s);
    }
    const std::string expect = b.expect[0] == ':' ? b.path + b.expect : b.expect;
    expect_one_error(test::run_command(argv, 10.0), expect, b.path);
    ++count;
  }
  EXPECT_GE(count, 30);
}

TEST(Cli, BadFlagsGiveOneErrorLineAndExit2) {
  const std::string bin = test::tramontane_binary();
  const std::string tiny = test::source_path("recipes/tiny.yaml");
  struct Case {
    std::vector<std::string> args;
    std::string expect;
  };
  std::vector<Case> cases = {
      {{"check", tiny, "--world", "0"}, "--world"},
      {{"check", tiny, "--world", "abc"}, "--world"},
      {{"check", tiny, "--bogus"}, "--bogus"},
      {{"check", tiny, "--set", "train.steps"}, "--set train.steps"},
      {{"check", tiny, "--set", "train.stepz=3"}, "--set train.stepz=3: train.stepz"},
      {{"check", tiny, "--set", "train.steps=-4"}, "--set train.steps=-4: train.steps"},
      {{"check", "/nonexistent/recipe.yaml"}, "/nonexistent/recipe.yaml"},
      {{"check", tiny, "--memory", "--set", "model.moe.top_k=0"}, "--set model.moe.top_k=0"},
      // Products no machine holds: refused before anything is sized by them (a loop over 1e11
      // layers, an arena of 1e10 TiB), naming the key furthest above Mixtral 8x7B's.
      {{"check", tiny, "--memory", "--set", "model.d_model=4000000000", "--set",
        "model.vocab_size=4000000000"},
       "model.d_model: 4e+09 makes one rank hold at least"},
      {{"check", tiny, "--set", "model.n_layers=100000000000"},
       "--set model.n_layers=100000000000: model.n_layers: 1e+11 makes one rank hold at least"},
      {{"check", tiny, "--set", "model.moe.n_experts=100000000000"}, "model.moe.n_experts: 1e+11"},
      {{"check", tiny, "--set", "model.ffn_hidden=9000000000000000000"}, "model.ffn_hidden: 9e+18"},
      {{"train", tiny, "--set", "train.global_batch=100000000000000", "--set",
        "train.micro_batch=100000000000000"},
       "train.micro_batch: 1e+14 makes one rank hold at least"},
      // Under the bound but past the address space the dry run sizes it in.
      {{"check", tiny, "--memory", "--set", "data.seq_len=3000000000", "--set",
        "model.max_seq_len=3000000000"},
       "data.seq_len: 3e+09: one rank's arena 'activations' of"},
      {{"check", tiny, "--hw", "a100"}, "--hw: unknown accelerator 'a100'"},
      {{"plan", tiny, "--gpus", "4"}, "--hw"},
      {{"plan", tiny, "--gpus", "4", "--hw", "h900"}, "--hw: unknown accelerator 'h900'"},
      {{"plan", tiny, "--gpus", "6", "--hw", "h100"}, "does not divide the world size 6"},
      {{"plan", tiny, "--gpus", "0", "--hw", "h100"}, "--gpus"},
      {{"plan", tiny, "--gpus", "4", "--hw", "h100", "--search", "--top", "0"}, "--top"},
      {{"plan", tiny, "--gpus", "4", "--hw", "h100", "--precision", "fp4"}, "--precision"},
      {{"frobnicate"}, "frobnicate"},
      {{}, "subcommand"},
      {{"train", tiny, "--set", "model.n_heads=0"}, "--set model.n_heads=0: model.n_heads"},
      {{"train", tiny, "--set", "train.dtype=bf16", "--set", "parallel.tp=1", "--set",
        "parallel.pp=1", "--set", "parallel.ep=1"},
       "--set train.dtype=bf16: train.dtype"},
      {{"train", tiny, "--set", "checkpoint.every=-1"},
       "--set checkpoint.every=-1: checkpoint.every"},
      {{"train", tiny, "--resume"}, "--resume"},
      {{"train", tiny}, "launch 4 ranks: scripts/train.sh or mpirun -n 4"},
      {{"prepare", "--out", "/tmp/x"}, "inputs"},
      {{"prepare", "/nonexistent/text.txt", "--out", "/tmp/x"},
       "/nonexistent/text.txt: cannot read"},
      {{"prepare", tiny, "--out", "/tmp/x", "--tokenizer", "bpe"},
       "--tokenizer: unknown tokenizer 'bpe'"},
      {{"prepare", tiny, "--out", "/tmp/x", "--val-fraction", "1.5"}, "--val-fraction"},
  };
  if (usable_gpus(nullptr) == 0) {  // with a GPU, train.device=cuda trains
    cases.push_back({{"train", tiny, "--set", "train.device=cuda", "--set", "parallel.tp=1",
                      "--set", "parallel.pp=1", "--set", "parallel.ep=1"},
                     "--set train.device=cuda: train.device: cuda, but no GPU"});
  }
  for (const Case& c : cases) {
    std::vector<std::string> argv = {bin};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    std::string what = "tramontane";
    for (const auto& a : c.args) what += " " + a;
    expect_one_error(test::run_command(argv, 20.0), c.expect, what);
  }
}

TEST(Cli, HelpDocumentsEveryCommandAndFlag) {
  const std::string bin = test::tramontane_binary();
  const auto top = test::run_command({bin, "--help"});
  EXPECT_EQ(top.exit_code, 0);
  for (const char* cmd : {"train", "check", "plan", "prepare"})
    EXPECT_NE(top.out.find(cmd), std::string::npos) << cmd;
  const std::vector<std::pair<std::string, std::vector<std::string>>> flags = {
      {"train", {"--set", "RECIPE"}},
      {"check",
       {"--set", "--world", "--print-world", "--json", "--memory", "--schema", "--markdown",
        "RECIPE"}},
      {"plan", {"--gpus", "--hw", "--nvlink-domain", "--set", "--json", "RECIPE"}},
      {"prepare", {"--out", "--tokenizer", "--val-fraction", "INPUTS"}},
  };
  for (const auto& [cmd, names] : flags) {
    const auto r = test::run_command({bin, cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd;
    for (const auto& n : names) {
      std::string haystack = r.out;
      std::string needle = n;
      std::transform(haystack.begin(), haystack.end(), haystack.begin(), ::toupper);
      std::transform(needle.begin(), needle.end(), needle.begin(), ::toupper);
      EXPECT_NE(haystack.find(needle), std::string::npos) << cmd << " --help lacks " << n << "\n"
                                                          << r.out;
    }
  }
}

TEST(Cli, CheckSchemaListsEveryKeyOneALine) {
  const auto r = test::run_command({test::tramontane_binary(), "check", "--schema"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto lines = lines_of(r.out);
  const std::vector<KeyInfo> keys = recipe_keys();
  ASSERT_EQ(lines.size(), keys.size()) << r.out;
  for (size_t i = 0; i < keys.size(); ++i) {
    const KeyInfo& k = keys[i];
    EXPECT_EQ(lines[i].rfind(k.path + " ", 0), 0u) << lines[i];  // starts with its dotted path
    EXPECT_NE(lines[i].find(k.type), std::string::npos) << lines[i];
    EXPECT_NE(lines[i].find("default " + k.fallback), std::string::npos) << lines[i];
    if (!k.range.empty()) {
      EXPECT_NE(lines[i].find("range " + k.range), std::string::npos) << lines[i];
    }
    EXPECT_NE(lines[i].find(k.meaning), std::string::npos) << lines[i];
  }
}

TEST(Cli, CheckJsonReportsMinistral3Sizes) {
  // The language models of Ministral 3 3B / 8B / 14B (embeddings counted once when tied; no vision
  // encoder): 3.43B, 8.49B, 13.5B by their published shapes.
  struct Want {
    const char* recipe;
    int world;
    double total;
  };
  for (const Want& w : {Want{"recipes/ministral-3-3b.yaml", 8, 3.43e9},
                        Want{"recipes/ministral-3-8b.yaml", 16, 8.49e9},
                        Want{"recipes/ministral-3-14b.yaml", 32, 13.5e9}}) {
    const auto r =
        test::run_command({test::tramontane_binary(), "check", test::source_path(w.recipe),
                           "--world", std::to_string(w.world), "--json"});
    ASSERT_EQ(r.exit_code, 0) << w.recipe << ": " << r.err;
    const nlohmann::json j = nlohmann::json::parse(r.out);
    const double total = j["total_params"].get<double>();
    EXPECT_NEAR(total, w.total, 0.01 * w.total) << w.recipe;
    EXPECT_EQ(j["active_params"].get<double>(), total) << w.recipe << ": a dense model";
    std::printf("  %s: %.4fB parameters\n", w.recipe, total / 1e9);
  }
}

TEST(Cli, CheckJsonReportsMistralLatentAttentionMoeSizes) {
  // The language models of Mistral Large 3 (published: "673B params and 39B active", beside a 2.5B
  // vision encoder) and Mistral Small 4 (published: 119B total; "6B active" by Mistral, 6.5B
  // elsewhere). Mistral's active figures leave out the input embedding (a lookup, no matmul):
  // Large 3 has 39.95B active with it, 39.01B without; Small 4 6.63B with it, 6.10B without.
  // Their KV caches hold the kv latent and the shared RoPE key (512 + 64 and 256 + 64 values a
  // layer), against keys and values of every head without the latent (n_kv_heads = n_heads, as
  // transformers' configs): 128 · (192 + 128) and 32 · (128 + 128) values a layer.
  struct Want {
    const char* recipe;
    int world;
    int stages;
    double total, active_without_embedding;
    int64_t kv_bytes, gqa_kv_bytes;  // bf16, per token
  };
  for (const Want& w : {Want{"recipes/mistral-large-3.yaml", 1024, 16, 673e9, 39e9,
                             2 * 61 * (512 + 64), 2 * 61 * 128 * (192 + 128)},
                        Want{"recipes/mistral-small-4.yaml", 64, 4, 119e9, 6.10e9,
                             2 * 36 * (256 + 64), 2 * 36 * 32 * (128 + 128)}}) {
    const auto r =
        test::run_command({test::tramontane_binary(), "check", test::source_path(w.recipe),
                           "--world", std::to_string(w.world), "--json", "--memory"});
    ASSERT_EQ(r.exit_code, 0) << w.recipe << ": " << r.err;
    const nlohmann::json j = nlohmann::json::parse(r.out);
    const double total = j["total_params"].get<double>();
    const double active = j["active_params"].get<double>();
    const double embedding = j["embedding_params"].get<double>();
    EXPECT_NEAR(total, w.total, 0.01 * w.total) << w.recipe;
    EXPECT_NEAR(active - embedding, w.active_without_embedding, 0.01 * w.active_without_embedding)
        << w.recipe;
    EXPECT_EQ(embedding, 131072.0 * (w.world == 1024 ? 7168 : 4096)) << w.recipe;
    EXPECT_EQ(j["attention"], "mla");
    EXPECT_EQ(j["kv_cache_bytes_per_token"]["bf16"].get<int64_t>(), w.kv_bytes) << w.recipe;
    EXPECT_EQ(j["gqa_kv_cache_bytes_per_token"]["bf16"].get<int64_t>(), w.gqa_kv_bytes) << w.recipe;
    // every pipeline stage fits a 141 GB H200
    ASSERT_EQ(j["memory_per_rank"].size(), static_cast<size_t>(w.stages)) << w.recipe;
    double most = 0;
    for (const auto& stage : j["memory_per_rank"]) {
      EXPECT_LT(stage["total"].get<double>(), 141e9) << w.recipe << " stage " << stage["stage"];
      most = std::max(most, stage["total"].get<double>());
    }
    std::printf(
        "  %s: %.4fB parameters, %.4fB active (%.4fB without the input embedding); KV %ld "
        "bytes a token (%ld without the latent); fullest stage %.1f GB\n",
        w.recipe, total / 1e9, active / 1e9, (active - embedding) / 1e9,
        static_cast<long>(w.kv_bytes), static_cast<long>(w.gqa_kv_bytes), most / 1e9);
  }
  // The human-readable line puts the two caches side by side.
  const auto r =
      test::run_command({test::tramontane_binary(), "check",
                         test::source_path("recipes/mistral-small-4.yaml"), "--world", "64"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("KV cache per token (inference): 23040 bytes in bf16 (11520 values over 36 "
                       "layers, the kv latent and the shared RoPE key)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("grouped-query attention with the same heads would cache 589824 bytes in "
                       "bf16 (32 kv heads of k 128 + v 128 over 36 layers), 25.6x as much"),
            std::string::npos)
      << r.out;
}

TEST(Cli, CheckHwRefusesALayoutThatDoesNotFitNamingTheKey) {
  // Mistral Large 3's layout fits an H200 (84.7 GiB on its fullest stage) but not an H100's 79.6
  // GiB, where the 16 routed experts a GPU are most of it: parallel.ep is the key to raise. With
  // ZeRO-1 off the AdamW state leads on Mixtral 8x22B (its layout at 128 H100s otherwise fits);
  // at micro-batches of 8 its activations do.
  const std::string bin = test::tramontane_binary();
  const std::string large3 = test::source_path("recipes/mistral-large-3.yaml");
  const std::string mixtral = test::source_path("recipes/mixtral-8x22b.yaml");
  const auto fits = test::run_command({bin, "check", large3, "--world", "1024", "--hw", "h200"});
  ASSERT_EQ(fits.exit_code, 0) << fits.err;
  EXPECT_NE(fits.out.find("fits an h200: the fullest rank 84.7 GiB + 2 GiB reserve of 140.4 GiB"),
            std::string::npos)
      << fits.out;
  expect_one_error(test::run_command({bin, "check", large3, "--world", "1024", "--hw", "h100"}),
                   large3 + ":72:3: parallel.ep: stage 1 (layers 4-7) needs 84.7 GiB a rank",
                   "large 3 on h100");
  const auto mixtral_fits =
      test::run_command({bin, "check", mixtral, "--world", "128", "--hw", "h100"});
  ASSERT_EQ(mixtral_fits.exit_code, 0) << mixtral_fits.err;
  expect_one_error(test::run_command({bin, "check", mixtral, "--world", "128", "--hw", "h100",
                                      "--set", "parallel.zero1=false"}),
                   "parallel.zero1: stage", "mixtral without zero1");
  expect_one_error(test::run_command({bin, "check", mixtral, "--world", "128", "--hw", "h100",
                                      "--set", "train.micro_batch=8"}),
                   "train.micro_batch: stage", "mixtral at micro-batches of 8");
}

TEST(Cli, PlanReproducesPublishedRuns) {
  // docs/PLANNING.md's table, each within 20% of its source: Megatron-Core's Mixtral 8x22B (bf16,
  // ~445 TFLOP/s a GPU on 128 H100s), Megatron-Bridge's DeepSeek-V3 on 1024 H100s (FP8, 1297
  // tokens/s a GPU) and DeepSeek-V3's report on 2048 H800s (180K GPU-hours per trillion tokens:
  // 1543 tokens/s a GPU), the last two with their FP8 GEMMs and overlapped communication.
  // recipes/deepseek-v3.yaml counts 671B parameters and 37B active, as published.
  const std::string bin = test::tramontane_binary();
  const std::string dsv3 = test::source_path("recipes/deepseek-v3.yaml");
  const auto plan = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {bin, "plan"});
    args.push_back("--json");
    const auto r = test::run_command(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out.empty() ? "{}" : r.out);
  };
  const auto mixtral =
      plan({test::source_path("recipes/mixtral-8x22b.yaml"), "--gpus", "128", "--hw", "h100"});
  EXPECT_NEAR(mixtral.value("tflops_per_gpu", 0.0), 445, 0.2 * 445);
  // Megatron's dispatch in bf16 (fp8.dispatch=false), DeepSeek's own in FP8 (the default).
  const auto h100 = plan({dsv3, "--gpus", "1024", "--hw", "h100", "--precision", "fp8", "--overlap",
                          "--set", "fp8.dispatch=false"});
  EXPECT_NEAR(h100.value("tokens_per_s", 0.0) / 1024, 1297, 0.2 * 1297);
  const auto h800 = plan({dsv3, "--gpus", "2048", "--hw", "h800", "--precision", "fp8", "--overlap",
                          "--set", "parallel.tp=1", "--set", "parallel.pp=16", "--set",
                          "parallel.ep=64", "--set", "train.global_batch=15360"});
  EXPECT_NEAR(h800.value("tokens_per_s", 0.0) / 2048, 1543, 0.2 * 1543);
  const auto r = test::run_command({bin, "check", dsv3, "--world", "1024", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_NEAR(j["total_params"].get<double>(), 671e9, 0.01 * 671e9);
  EXPECT_NEAR(j["active_params"].get<double>(), 37e9, 0.02 * 37e9);
}

TEST(Cli, CheckReportsMixtralSizes) {
  // Published: Mixtral 8x7B has 46.7B parameters, 12.9B active; 8x22B has 141B, 39B active.
  struct Want {
    const char* recipe;
    int world;
    double total, active;
  };
  for (const Want& w : {Want{"recipes/mixtral-8x7b.yaml", 64, 46.7e9, 12.9e9},
                        Want{"recipes/mixtral-8x22b.yaml", 128, 141e9, 39e9}}) {
    const auto r =
        test::run_command({test::tramontane_binary(), "check", test::source_path(w.recipe),
                           "--world", std::to_string(w.world)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.out, m,
                                  std::regex(R"(parameters: ([0-9.]+)B total, ([0-9.]+)B active)")))
        << r.out;
    EXPECT_NEAR(std::stod(m[1]) * 1e9, w.total, 0.01 * w.total) << w.recipe;
    EXPECT_NEAR(std::stod(m[2]) * 1e9, w.active, 0.01 * w.active) << w.recipe;
    // --memory: a line per pipeline stage, under an 80 GB GPU's memory on every one
    const auto mem =
        test::run_command({test::tramontane_binary(), "check", test::source_path(w.recipe),
                           "--world", std::to_string(w.world), "--memory"});
    ASSERT_EQ(mem.exit_code, 0) << mem.err;
    const std::regex stage_line(R"( +([0-9]+) +[0-9]+-[0-9]+ +[0-9]+ .* ([0-9.]+))");
    std::istringstream lines(mem.out);
    int stages = 0;
    for (std::string line; std::getline(lines, line);) {
      if (!std::regex_match(line, m, stage_line)) continue;
      ++stages;
      EXPECT_LT(std::stod(m[2]), 74.5) << w.recipe << " stage " << m[1];
    }
    EXPECT_EQ(stages, w.world == 64 ? 4 : 8) << mem.out;
    // every rank appears in the rank map, the last one included
    const std::regex last_rank("\\n +" + std::to_string(w.world - 1) + " +[0-9]+ ");
    EXPECT_TRUE(std::regex_search(r.out, last_rank)) << w.recipe;
  }
}

TEST(Cli, BadRecipeUnderMpirunEndsEveryRankWithExit2) {
  const auto r =
      test::run_command({TMT_MPIEXEC, "-n", "3", "--oversubscribe", test::tramontane_binary(),
                         "train", test::source_path("recipes/tiny.yaml"), "--set", "parallel.tp=1",
                         "--set", "parallel.pp=1", "--set", "parallel.ep=3"},
                        30.0);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  int errors = 0;
  for (const auto& l : lines_of(r.err)) errors += l.rfind("error: ", 0) == 0 ? 1 : 0;
  EXPECT_EQ(errors, 1) << r.err;
  EXPECT_NE(r.err.find("parallel.ep"), std::string::npos) << r.err;
}

TEST(Cli, InconsistentLayoutsEndEveryRankWithinTenSeconds) {
  struct Case {
    int ranks;
    std::vector<std::string> sets;
    std::string key;
  };
  const std::vector<Case> cases = {
      {3, {"parallel.dp=2"}, "parallel.dp"},
      {3, {"parallel.ep=3"}, "parallel.ep"},
      {4, {"parallel.pp=8"}, "parallel"},
      {2, {"parallel.pp=2", "parallel.pp_layers=[1,2]"}, "parallel.pp_layers"},
      {4, {"parallel.tp=4", "model.n_heads=6", "model.head_dim=16"}, "parallel.tp"},
      {2, {"parallel.ep=2", "parallel.etp=2"}, "parallel.ep"},
      {4, {"train.micro_batch=2", "train.global_batch=6"}, "train.global_batch"},
      {2, {"parallel.tp=2", "parallel.sequence_parallel=false"}, "parallel.sequence_parallel"},
      {3, {"parallel.tp=2"}, "parallel"},
      {2, {"parallel.tp=2", "data.seq_len=127"}, "data.seq_len"},
      {2, {"model.moe=null", "parallel.ep=2"}, "parallel.ep"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {TMT_MPIEXEC,
                                     "-n",
                                     std::to_string(c.ranks),
                                     "--oversubscribe",
                                     test::tramontane_binary(),
                                     "train",
                                     test::source_path("recipes/tiny.yaml")};
    std::string what = std::to_string(c.ranks) + " ranks:";
    // From the one-rank layout of the tiny model, each case breaks one rule.
    for (const char* s : {"parallel.tp=1", "parallel.pp=1", "parallel.ep=1"}) {
      argv.push_back("--set");
      argv.push_back(s);
    }
    for (const auto& s : c.sets) {
      argv.push_back("--set");
      argv.push_back(s);
      what += " " + s;
    }
    const auto start = std::chrono::steady_clock::now();
    const auto r = test::run_command(argv, 10.0);
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_FALSE(r.timed_out) << what;
    EXPECT_LT(took, 10.0) << what;
    EXPECT_EQ(r.exit_code, 2) << what << "\n" << r.err;
    int errors = 0;
    std::string line;
    for (const auto& l : lines_of(r.err)) {
      if (l.rfind("error: ", 0) == 0) {
        ++errors;
        line = l;
      }
    }
    EXPECT_EQ(errors, 1) << what << "\n" << r.err;
    EXPECT_NE(line.find(": " + c.key + ":"), std::string::npos) << what << ": " << line;
  }
}

TEST(Cli, PrepareBadJsonlLineIsOneErrorNamingFileAndLine) {
  const fs::path dir = fs::path(testing::TempDir()) / "tmt_cli_prepare_bad_jsonl";
  fs::create_directories(dir);
  const std::string input = (dir / "docs.jsonl").string();
  std::ofstream(input) << "{\"text\": \"one\"}\n{\"text\": \"two\"}\n{\"text\": two}\n";
  const auto r = test::run_command({test::tramontane_binary(), "prepare", input, "--format",
                                    "jsonl", "--threads", "2", "--out", (dir / "out").string()},
                                   20.0);
  expect_one_error(r, input + ":3: not a JSON line", "prepare of a bad JSONL line");
  fs::remove_all(dir);
}
}  // namespace
}  // namespace tmt
