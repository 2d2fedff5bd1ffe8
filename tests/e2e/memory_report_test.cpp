// run.dir/memory.json (trainer/memory_report.h): after a short run, every rank's arenas as the
// trainer allocated them equal what the memory plan (trainer/memory_plan.h, `check --memory`)
// predicts for its pipeline stage (what `plan` and `check --memory` print), byte for byte, at
// thirteen layouts: with and without tensor, context, pipeline (plain and interleaved) and
// expert parallelism, ZeRO-1 and each train.recompute mode, GQA and latent attention, the tiny
// recipe and the Mistral 3 miniatures;
// the expert rows as planned, grown past the plan only when routing is unbalanced.
//
// timeout: 600
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/run.h"
#include "tests/support/temp_dir.h"
#include "trainer/memory_plan.h"

namespace tmt {
namespace {

void expect_memory_json_is_the_plan(int ranks, const std::vector<std::string>& sets,
                                    const char* recipe_file = "recipes/tiny.yaml") {
  SCOPED_TRACE(fmt::format("{} ranks, {} {}", ranks, recipe_file, fmt::join(sets, " ")));
  test::TempDir dir;
  const std::string recipe = test::source_path(recipe_file);
  std::vector<std::string> args = {"train",         recipe,  "--set",
                                   "train.steps=2", "--set", "run.dir=" + dir.path().string()};
  for (const std::string& s : sets) args.insert(args.end(), {"--set", s});
  const test::RunResult run = test::run_tramontane(args, ranks, 300);
  ASSERT_EQ(run.exit_code, 0) << run.err;

  std::ifstream in(dir.path() / "memory.json");
  ASSERT_TRUE(in) << "no memory.json in " << dir.path();
  const nlohmann::json doc = nlohmann::json::parse(in);
  EXPECT_EQ(doc["step"], 2);
  EXPECT_EQ(doc["device"], "cpu");
  ASSERT_EQ(doc["ranks"].size(), static_cast<size_t>(ranks));

  Recipe r = load_recipe(recipe, sets);
  resolve_layout(r, ranks);
  const std::vector<StageMemory> plan = plan_memory(r);
  for (int rank = 0; rank < ranks; ++rank) {
    SCOPED_TRACE(fmt::format("rank {}", rank));
    const nlohmann::json& m = doc["ranks"][static_cast<size_t>(rank)];
    EXPECT_EQ(m["rank"], rank);
    const auto stage = m["coords"]["pp"].get<size_t>();
    ASSERT_LT(stage, plan.size());
    const StageMemory& p = plan[stage];
    const nlohmann::json& b = m["bytes"];
    ASSERT_EQ(m["layers"].size(), p.layers.size());
    for (size_t c = 0; c < p.layers.size(); ++c) {
      EXPECT_EQ(m["layers"][c][0], p.layers[c].begin);
      EXPECT_EQ(m["layers"][c][1], p.layers[c].end);
    }
    EXPECT_EQ(m["in_flight"], p.in_flight);
    EXPECT_EQ(b["weights"], p.weights);
    EXPECT_EQ(b["grads"], p.grads);
    EXPECT_EQ(b["compute_weights"], p.compute_weights);
    EXPECT_EQ(b["grad_shards"], p.grad_shards);
    EXPECT_EQ(b["optimizer"], p.optimizer);
    EXPECT_EQ(b["activations"], p.activations);
    EXPECT_EQ(b["scratch"], p.scratch);
    EXPECT_EQ(b["workspace"], p.workspace);
    EXPECT_EQ(m["expert_rows_planned"], p.expert_rows);
    EXPECT_GE(b["expert_rows"].get<size_t>(), p.expert_rows);
    EXPECT_GT(m["scratch_peak"].get<size_t>(), 0u);
    EXPECT_LE(m["scratch_peak"].get<size_t>(), p.scratch);
    EXPECT_GT(m["batch"].get<size_t>(), 0u);
    EXPECT_TRUE(m["device_used"].is_null());
    size_t sum = 0;
    for (const char* k : {"weights", "grads", "compute_weights", "grad_shards", "optimizer",
                          "activations", "scratch", "expert_rows", "workspace"}) {
      sum += b[k].get<size_t>();
    }
    EXPECT_EQ(b["total"], sum);
  }
}

TEST(MemoryReport, OneRankWithLatentAttention) {
  expect_memory_json_is_the_plan(
      1, {"parallel.tp=1", "parallel.pp=1", "parallel.ep=1", "model.attention=mla",
          "model.mla.q_lora_rank=32", "model.mla.kv_lora_rank=16", "model.mla.qk_nope_head_dim=8",
          "model.mla.qk_rope_head_dim=8", "model.mla.v_head_dim=16"});
}
TEST(MemoryReport, TensorPipelineAndExpertParallel) { expect_memory_json_is_the_plan(4, {}); }
TEST(MemoryReport, PipelineAlone) {
  expect_memory_json_is_the_plan(2, {"parallel.tp=1", "parallel.ep=1"});
}
TEST(MemoryReport, ExpertParallelWithZero1) {
  expect_memory_json_is_the_plan(
      4, {"parallel.tp=1", "parallel.pp=1", "parallel.ep=2", "parallel.zero1=true"});
}
// train.recompute: the activation arenas shrink (selective, then full) and the plan follows.
TEST(MemoryReport, SelectiveRecomputeAtTensorPipelineAndExpertParallel) {
  expect_memory_json_is_the_plan(4, {"train.recompute=selective"});
}
TEST(MemoryReport, FullRecomputeWithPipelineAndZero1) {
  expect_memory_json_is_the_plan(
      2, {"parallel.tp=1", "parallel.ep=1", "parallel.zero1=true", "train.recompute=full"});
}
TEST(MemoryReport, FullRecomputeWithLatentAttention) {
  expect_memory_json_is_the_plan(
      2, {"parallel.tp=2", "parallel.pp=1", "parallel.ep=1", "model.attention=mla",
          "model.mla.q_lora_rank=32", "model.mla.kv_lora_rank=16", "model.mla.qk_nope_head_dim=8",
          "model.mla.qk_rope_head_dim=8", "model.mla.v_head_dim=16", "train.recompute=full"});
}
// Interleaved 1F1B: two model chunks a stage, each with the slots the schedule keeps.
TEST(MemoryReport, InterleavedPipelineAtTensorAndExpertParallel) {
  expect_memory_json_is_the_plan(4, {"parallel.vpp=2"});
}
TEST(MemoryReport, InterleavedPipelineWithFullRecomputeAndZero1) {
  expect_memory_json_is_the_plan(4, {"parallel.tp=1", "parallel.ep=2", "parallel.vpp=2",
                                     "parallel.zero1=true", "train.recompute=full"});
}
// Context parallelism: each rank's 2·C tokens of each sequence, and the attention's gathered
// keys and values in the scratch.
TEST(MemoryReport, ContextParallelWithTensorAndExpertParallel) {
  expect_memory_json_is_the_plan(4, {"parallel.cp=2", "parallel.pp=1"});
}
TEST(MemoryReport, ContextParallelWithZero1AndSelectiveRecompute) {
  expect_memory_json_is_the_plan(4, {"parallel.cp=2", "parallel.tp=1", "parallel.pp=1",
                                     "parallel.ep=4", "parallel.zero1=true",
                                     "train.recompute=selective"});
}
// The Mistral 3 miniatures: latent attention, a dense first layer, shared experts.
TEST(MemoryReport, TinyMistralLarge3AtTensorPipelineExpertParallel) {
  expect_memory_json_is_the_plan(
      4, {"parallel.tp=2", "parallel.pp=2", "parallel.ep=2", "data.seq_len=64"},
      "recipes/tiny-mistral-large-3.yaml");
}
TEST(MemoryReport, TinyMistralSmall4SelectiveRecomputeWithZero1) {
  expect_memory_json_is_the_plan(
      2,
      {"parallel.tp=1", "parallel.pp=1", "parallel.ep=2", "parallel.zero1=true", "data.seq_len=64",
       "train.recompute=selective"},
      "recipes/tiny-mistral-small-4.yaml");
}

}  // namespace
}  // namespace tmt
