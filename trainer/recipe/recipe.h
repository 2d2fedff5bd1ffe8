// Recipe: the typed form of a YAML recipe — model, parallel layout, data, optimizer, schedule.
//
// load_recipe() reads the YAML, applies `--set key.path=value` overrides, checks every key and
// value, and returns a Recipe whose every field is filled (defaults resolved). resolve_layout()
// then checks the cross-field rules that need the world size and derives parallel.dp.
// All errors throw InputError with one line naming where the bad value came from:
//   recipes/x.yaml:12:5: model.moe.n_experts: 8 is not divisible by parallel.ep = 3
//   --set model.d_model=abc: model.d_model: expected an integer, got 'abc'
// The key names are a contract (DESIGN.md §6): tools and users rely on them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kernels/base/tensor.h"
#include "parallel/open_world.h"
#include "parallel/topology.h"

namespace tmt {

struct RopeScaling {
  std::string type = "none";         // none | yarn
  double factor = 1.0;               // context extension factor s
  int64_t original_max_seq_len = 0;  // the context the model was trained at before extension
  double beta_fast = 32.0;           // YaRN ramp: wavelengths with more than beta_fast turns keep
  double beta_slow = 1.0;  //   their frequency; fewer than beta_slow are fully interpolated
  double mscale = 1.0;     // attention temperature multiplier (0.1·ln(s)+1 when s>1, scaled)
};

struct MoeConfig {
  int64_t n_experts = 8;
  int64_t top_k = 2;
  int64_t expert_ffn_hidden = 0;         // F of each routed expert
  int64_t n_shared_experts = 0;          // always-on experts added for every token
  int64_t shared_expert_ffn_hidden = 0;  // F of each shared expert; defaults to expert_ffn_hidden
  int64_t first_dense_layers = 0;        // layers [0, first_dense_layers) use the dense FFN
  std::vector<std::string>
      layer_pattern;              // optional: "dense" | "moe" per layer; overrides the above
  std::string score = "softmax";  // softmax | sigmoid
  double aux_loss_coeff = 0.01;
  double z_loss_coeff = 0.0;
  std::optional<double> capacity_factor;  // nullopt = dropless
};

struct ModelConfig {
  int64_t vocab_size = 0;
  int64_t d_model = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;    // defaults to d_model / n_heads
  int64_t ffn_hidden = 0;  // F of the dense FFN layers
  double norm_eps = 1e-5;
  int64_t max_seq_len = 0;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  std::optional<int64_t> sliding_window;  // nullopt = full causal attention
  bool tie_embeddings = false;
  double init_std = 0.02;
  std::optional<MoeConfig> moe;  // nullopt = a dense model

  // True when layer `i` has a MoE FFN (from layer_pattern, or first_dense_layers).
  bool is_moe_layer(int64_t i) const;
};

struct ParallelConfig {
  int64_t tp = 1;
  int64_t pp = 1;
  int64_t dp = 0;  // 0 until resolve_layout() derives it as world / (tp · pp)
  int64_t ep = 1;
  int64_t etp = 1;
  int64_t edp = 0;                 // derived: tp · dp / (etp · ep)
  bool sequence_parallel = false;  // on whenever tp > 1 (required by MoE token routing)
  bool zero1 = false;
  std::vector<int64_t> pp_layers;  // layers per pipeline stage; empty = as even as possible
  // How the groups communicate: "auto" (NCCL on GPUs when every rank has a GPU of its own, else
  // MPI), "nccl" or "mpi" (device tensors staged through host memory; slow, for tests).
  std::string comm = "auto";
};

struct SyntheticConfig {
  int64_t branching = 4;       // each token has this many possible successors
  double concentration = 1.0;  // Dirichlet-like spread of the successor probabilities
  uint64_t seed = 1234;        // the chain itself (not the sampling, which follows train.seed)
};

struct DataConfig {
  std::string source = "synthetic";    // synthetic | shards
  std::vector<std::string> paths;      // shard files or directories (train split); for `shards`
  std::vector<std::string> val_paths;  // validation shards; default: the `val` split beside paths
  int64_t seq_len = 0;
  SyntheticConfig synthetic;
};

struct OptimizerConfig {
  double lr = 3e-4;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  double grad_clip = 1.0;  // global-norm clipping; 0 = off
};

struct ScheduleConfig {
  int64_t warmup_steps = 0;
  std::string decay = "cosine";  // cosine | linear | wsd | constant
  double min_lr = 0.0;
  double wsd_decay_fraction = 0.2;  // wsd: the share of steps spent in the final decay
};

struct TrainConfig {
  int64_t steps = 0;
  int64_t global_batch = 0;  // sequences per optimizer step, over all data-parallel ranks
  int64_t micro_batch = 1;   // sequences per forward/backward on one data-parallel rank
  uint64_t seed = 0;
  std::string dtype = "fp32";     // fp32 | bf16
  std::string device = "cpu";     // cpu | cuda
  int64_t max_skipped_steps = 5;  // stop after this many non-finite steps in a row
};

struct CheckpointConfig {
  int64_t every = 0;   // steps between checkpoints; 0 = only at the end
  int64_t keep = 2;    // newest checkpoints kept
  bool resume = true;  // resume from run.dir/checkpoints/latest when present
};

struct LogConfig {
  int64_t every = 1;
  int64_t eval_every = 0;  // 0 = no validation
  int64_t eval_batches = 4;
  bool tensorboard = false;
};

struct RunConfig {
  std::string dir = "runs/default";
  std::string name = "default";
};

struct Recipe {
  ModelConfig model;
  ParallelConfig parallel;
  DataConfig data;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  TrainConfig train;
  CheckpointConfig checkpoint;
  LogConfig log;
  RunConfig run;

  // Where each key's value came from, for error messages: "model.moe.n_experts" ->
  // "recipes/x.yaml:12:5" or "--set model.moe.n_experts=7". Sections map to their own line.
  std::map<std::string, std::string> origins;
  std::string source;  // the recipe file's path, or the embedded recipe's name

  // The place to blame for `key`: its own origin, else its section's, else the file.
  std::string origin_of(const std::string& key) const;
};

// Reads `path` (or the embedded default when path is empty), applies `overrides` ("key.path=value"
// in order), checks keys, types, ranges and the rules that need no world size.
Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides);
// The same from text; `source` names it in errors.
Recipe parse_recipe(const std::string& text, const std::string& source,
                    const std::vector<std::string>& overrides);

// Checks the layout against `world` ranks and derives parallel.dp, parallel.edp and
// parallel.sequence_parallel. Throws InputError naming the key at fault.
void resolve_layout(Recipe& recipe, int64_t world);

// Temporary, until the recipe holds enums.
Device device_of(const Recipe& r);
CommKind comm_of(const Recipe& r);

// The process grids of a (resolved) parallel section.
Layout layout_of(const ParallelConfig& parallel);

// The ranks a recipe needs when it fixes dp (tp · dp · pp), or 0 when dp is left to the world size.
int64_t required_world(const Recipe& recipe);

// Every key with its resolved value, as YAML (what run.dir/recipe.resolved.yaml holds); parses back
// to the same Recipe.
std::string to_yaml(const Recipe& recipe);

}  // namespace tmt
