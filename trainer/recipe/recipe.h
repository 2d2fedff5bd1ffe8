// Recipe: the typed form of a YAML recipe — model, parallel layout, data, optimizer, schedule.
//
// Every key is declared once, in the schema (schema.h): its type, default, range and meaning. The
// schema drives the reader, the allowed keys and their nearest-key suggestions, to_yaml, and
// `tramontane check --schema` (the README's table is generated from it). The rules that tie
// several keys together are code: recipe.cpp (those that need no world size) and layout.cpp.
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
#include <string_view>
#include <utility>
#include <vector>

#include "kernels/base/tensor.h"
#include "kernels/fp8.h"
#include "kernels/rope.h"
#include "kernels/router.h"
#include "parallel/open_world.h"
#include "parallel/topology.h"

namespace tmt {

enum class LayerKind : uint8_t { kDense, kMoe };
enum class AttentionKind : uint8_t { kGqa, kMla };
enum class DataSourceKind : uint8_t { kSynthetic, kShards };
enum class LrDecay : uint8_t { kCosine, kLinear, kWsd, kConstant };

// RoPE's context extension and Llama 4's query scaling, in transformers' terms (kernels/rope.h has
// the formulas).
struct RopeScaling {
  RopeScalingType type = RopeScalingType::kNone;
  double factor = 1.0;               // context extension factor s
  int64_t original_max_seq_len = 0;  // the context the model was trained at before extension
  double beta_fast = 32.0;           // YaRN ramp: wavelengths with more than beta_fast turns keep
  double beta_slow = 1.0;        //   their frequency; fewer than beta_slow are fully interpolated
  std::optional<double> mscale;  // with mscale_all_dim: m = g(s, mscale) / g(s, all)
  std::optional<double> mscale_all_dim;      //   (g(s, a) = 0.1·a·ln s + 1); else m = g(s, 1)
  std::optional<double> attention_factor;    // m itself, instead of the above
  bool truncate = true;                      // round the ramp's ends (floor / ceil)
  double llama_4_beta = 0.0;                 // q *= 1 + beta·ln(1 + floor(pos / L4)); 0 = off
  int64_t llama_4_original_max_seq_len = 0;  // L4
};

struct MoeConfig {
  int64_t n_experts = 8;
  int64_t top_k = 2;
  int64_t expert_ffn_hidden = 0;         // F of each routed expert
  int64_t n_shared_experts = 0;          // always-on experts added for every token
  int64_t shared_expert_ffn_hidden = 0;  // F of each shared expert; defaults to expert_ffn_hidden
  int64_t first_dense_layers = 0;        // layers [0, first_dense_layers) use the dense FFN
  std::vector<LayerKind> layer_pattern;  // optional, one per layer; overrides first_dense_layers
  RouterScore score = RouterScore::kSoftmax;
  double aux_loss_coeff = 0.01;
  double z_loss_coeff = 0.0;
  std::optional<double> capacity_factor;  // nullopt = dropless
  // DeepSeek-V3 routing (kernels/router.h): the routed weights' factor, group-limited choice, the
  // aux-loss-free expert bias (a layer's bias exists when bias_update_rate > 0) and the
  // sequence-wise balance loss.
  double routed_scaling_factor = 1.0;
  int64_t n_groups = 1;
  int64_t topk_groups = 1;
  double bias_update_rate = 0.0;
  double seq_aux_loss_coeff = 0.0;
  bool expert_bias() const { return bias_update_rate > 0.0; }
};

// Multi-head latent attention (DeepSeek-V3; trainer/model/mla_layer.h): the sizes of its latents
// and of each head's parts.
struct MlaConfig {
  int64_t q_lora_rank = 0;       // the queries' latent; 0 = queries straight from the input
  int64_t kv_lora_rank = 0;      // the keys' and values' shared latent
  int64_t qk_nope_head_dim = 0;  // dn: the part of a query/key head without RoPE
  int64_t qk_rope_head_dim = 0;  // dr: the part with RoPE (one key part shared by every head)
  int64_t v_head_dim = 0;        // dv
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
  bool rope_interleaved = false;       // RoPE pairs (2i, 2i+1) instead of (i, i + Dr/2)
  double partial_rotary_factor = 1.0;  // the first Dr = int(head_dim · factor) dims rotate
  RopeScaling rope_scaling;
  std::optional<int64_t> sliding_window;  // nullopt = full causal attention
  bool tie_embeddings = false;
  double init_std = 0.02;
  std::optional<MoeConfig> moe;  // nullopt = a dense model
  AttentionKind attention = AttentionKind::kGqa;
  std::optional<MlaConfig> mla;  // the sizes of multi-head latent attention (attention: mla)

  bool is_mla() const { return attention == AttentionKind::kMla; }
  // The per-head size RoPE turns (its tables' Dh): head_dim, or MLA's qk_rope_head_dim.
  int64_t rope_head_dim() const { return is_mla() ? mla->qk_rope_head_dim : head_dim; }
  // True when layer `i` has a MoE FFN (from layer_pattern, or first_dense_layers).
  bool is_moe_layer(int64_t i) const;
  // True when some layer has the dense FFN (and so needs ffn_hidden).
  bool has_dense_layers() const;
  // Dr = int(head_dim · partial_rotary_factor), as transformers truncates it.
  int64_t rotary_dim() const;
  // The RoPE tables' parameters (kernels/rope.h).
  RopeParams rope_params() const;
};

struct ParallelConfig {
  int64_t tp = 1;
  int64_t cp = 1;  // context parallelism: each sequence split over cp ranks
  int64_t pp = 1;
  int64_t vpp = 1;  // model chunks per pipeline rank (interleaved 1F1B)
  int64_t dp = 0;   // 0 until resolve_layout() derives it as world / (tp · cp · pp)
  int64_t ep = 1;
  int64_t etp = 1;
  int64_t edp = 0;                 // derived: tp · dp / (etp · ep); not a key
  bool sequence_parallel = false;  // on whenever tp > 1 (required by MoE token routing)
  bool zero1 = false;
  // layers per pipeline stage (pp·vpp entries, one per virtual stage, in model order); empty = as
  // even as possible
  std::vector<int64_t> pp_layers;
  CommKind comm = CommKind::kAuto;
};

struct SyntheticConfig {
  int64_t branching = 4;       // each token has this many possible successors
  double concentration = 1.0;  // Dirichlet-like spread of the successor probabilities
  uint64_t seed = 1234;        // the chain itself (not the sampling, which follows train.seed)
};

struct DataConfig {
  DataSourceKind source = DataSourceKind::kSynthetic;
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

// The learning-rate schedule (optim/lr_schedule.h); the recipe section is `schedule`.
struct ScheduleConfig {
  int64_t warmup_steps = 0;
  LrDecay decay = LrDecay::kCosine;
  double min_lr = 0.0;
  double wsd_decay_fraction = 0.2;  // wsd: the share of steps spent in the final decay
};

// Activation recomputation (train.recompute): what backward recomputes instead of keeping.
//   kNone       every activation backward reads is kept from forward
//   kSelective  the cheap, large ones are recomputed in backward from what is kept: the norms'
//               outputs (from the norm's input), the attention core's output (from q, k, v) and
//               the SwiGLU activations of the FFNs and the experts (from their gate/up projections)
//   kFull       only each block's input is kept per in-flight micro-batch; backward reruns the
//               block's forward from it (one block's internals live at a time, for every slot)
enum class Recompute : uint8_t { kNone, kSelective, kFull };

// The format of the linears' and experts' GEMMs (train.precision): the activations' dtype, or FP8
// e4m3 with fp32 scales as the section fp8 says (kernels/fp8.h; the embedding, the head, the
// router and the attention core stay in the dtype).
enum class Precision : uint8_t { kDtype, kFp8 };

// What a loss spike (train.spike_zscore, optim/loss_spike.h) does: the step is skipped (the
// optimizer does not apply it), or only reported.
enum class SpikeAction : uint8_t { kSkip, kLog };

struct TrainConfig {
  int64_t steps = 0;
  int64_t global_batch = 0;  // sequences per optimizer step, over all data-parallel ranks
  int64_t micro_batch = 1;   // sequences per forward/backward on one data-parallel rank
  uint64_t seed = 0;
  DType dtype = DType::kF32;      // f32, or bf16 (mixed precision)
  Device device = Device::kCpu;   // cpu | cuda
  int64_t max_skipped_steps = 5;  // stop after this many non-finite steps in a row
  Recompute recompute = Recompute::kNone;
  Precision precision = Precision::kDtype;
  double timeout_s = 300;          // a collective not done in this long ends the job (watchdog)
  double startup_timeout_s = 600;  // the same until the first step is done
  double spike_zscore = 0;         // loss z-score above which a step is a spike; 0 = off
  SpikeAction spike_action = SpikeAction::kSkip;
};

// FP8 training's scaling (section fp8, read with train.precision: fp8).
struct Fp8Config {
  Fp8Scaling recipe = Fp8Scaling::kBlockwise;
  bool pow2_scales = false;
  bool dispatch = true;  // the expert dispatch in FP8 (not with tensorwise: it dispatches in dtype)
  Fp8Recipe kernel() const {
    return {.scaling = recipe,
            .pow2_scales = pow2_scales,
            .dispatch = dispatch && recipe != Fp8Scaling::kTensorwise};
  }
};

// What a run does when a checkpoint cannot be written (checkpoint.on_error): stop (exit 2 with one
// `error:` line) or warn and train on, retrying at the next checkpoint.
enum class OnCheckpointError : uint8_t { kStop, kContinue };

struct CheckpointConfig {
  int64_t every = 0;   // steps between checkpoints; 0 = only at the end
  int64_t keep = 2;    // newest checkpoints kept
  bool resume = true;  // resume from run.dir/checkpoints/latest when present
  OnCheckpointError on_error = OnCheckpointError::kStop;
};

struct LogConfig {
  int64_t every = 1;
  int64_t eval_every = 0;  // 0 = no validation
  int64_t eval_batches = 4;
  bool tensorboard = false;
  bool per_layer = false;  // per-layer gradient norms and expert loads in metrics.jsonl
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
  Fp8Config fp8;
  CheckpointConfig checkpoint;
  LogConfig log;
  RunConfig run;

  // Where each key's value came from, for error messages: "model.moe.n_experts" ->
  // "recipes/x.yaml:12:5" or "--set model.moe.n_experts=7". Sections map to their own line. A key
  // given as null has no origin (null means its default).
  std::map<std::string, std::string> origins;
  std::string source;  // the recipe file's path, or the embedded recipe's name

  // The place to blame for `key`: its own origin, else its section's, else the file.
  std::string origin_of(const std::string& key) const;
  // Whether the recipe (or a --set flag) gave `key` a value.
  bool given(const std::string& key) const { return origins.count(key) > 0; }
};

// Throws InputError "<origin of key>: <key>: <message>" (the rules between keys report this way).
[[noreturn]] void recipe_error(const Recipe& r, const std::string& key, const std::string& message);

// The spelling of every choice in recipes, per enum: Names<E>::list.
template <class E>
struct Names;
template <>
struct Names<LayerKind> {
  static constexpr std::pair<std::string_view, LayerKind> list[] = {{"dense", LayerKind::kDense},
                                                                    {"moe", LayerKind::kMoe}};
};
template <>
struct Names<DataSourceKind> {
  static constexpr std::pair<std::string_view, DataSourceKind> list[] = {
      {"synthetic", DataSourceKind::kSynthetic}, {"shards", DataSourceKind::kShards}};
};
template <>
struct Names<LrDecay> {
  static constexpr std::pair<std::string_view, LrDecay> list[] = {{"cosine", LrDecay::kCosine},
                                                                  {"linear", LrDecay::kLinear},
                                                                  {"wsd", LrDecay::kWsd},
                                                                  {"constant", LrDecay::kConstant}};
};
template <>
struct Names<RouterScore> {
  static constexpr std::pair<std::string_view, RouterScore> list[] = {
      {"softmax", RouterScore::kSoftmax}, {"sigmoid", RouterScore::kSigmoid}};
};
template <>
struct Names<AttentionKind> {
  static constexpr std::pair<std::string_view, AttentionKind> list[] = {
      {"gqa", AttentionKind::kGqa}, {"mla", AttentionKind::kMla}};
};
template <>
struct Names<RopeScalingType> {
  static constexpr std::pair<std::string_view, RopeScalingType> list[] = {
      {"none", RopeScalingType::kNone}, {"yarn", RopeScalingType::kYarn}};
};
template <>
struct Names<DType> {
  static constexpr std::pair<std::string_view, DType> list[] = {{"fp32", DType::kF32},
                                                                {"bf16", DType::kBF16}};
};
template <>
struct Names<Device> {
  static constexpr std::pair<std::string_view, Device> list[] = {{"cpu", Device::kCpu},
                                                                 {"cuda", Device::kCuda}};
};
template <>
struct Names<SpikeAction> {
  static constexpr std::pair<std::string_view, SpikeAction> list[] = {{"skip", SpikeAction::kSkip},
                                                                      {"log", SpikeAction::kLog}};
};
template <>
struct Names<OnCheckpointError> {
  static constexpr std::pair<std::string_view, OnCheckpointError> list[] = {
      {"stop", OnCheckpointError::kStop}, {"continue", OnCheckpointError::kContinue}};
};
template <>
struct Names<Recompute> {
  static constexpr std::pair<std::string_view, Recompute> list[] = {
      {"none", Recompute::kNone}, {"selective", Recompute::kSelective}, {"full", Recompute::kFull}};
};
template <>
struct Names<Precision> {
  static constexpr std::pair<std::string_view, Precision> list[] = {{"dtype", Precision::kDtype},
                                                                    {"fp8", Precision::kFp8}};
};
template <>
struct Names<Fp8Scaling> {
  static constexpr std::pair<std::string_view, Fp8Scaling> list[] = {
      {"blockwise", Fp8Scaling::kBlockwise},
      {"tensorwise", Fp8Scaling::kTensorwise},
      {"mxfp8", Fp8Scaling::kMxfp8}};
};
template <>
struct Names<CommKind> {
  static constexpr std::pair<std::string_view, CommKind> list[] = {
      {"auto", CommKind::kAuto}, {"nccl", CommKind::kNccl}, {"mpi", CommKind::kMpi}};
};

// A choice's spelling in recipes ("cosine"); "?" for a value outside the list.
template <class E>
std::string_view name_of(E value) {
  for (const auto& [name, v] : Names<E>::list) {
    if (v == value) return name;
  }
  return "?";
}

// Reads `path` (or the embedded default when path is empty), applies `overrides` ("key.path=value"
// in order), checks keys, types, ranges and the rules that need no world size.
Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides);
// The same from text; `source` names it in errors.
Recipe parse_recipe(const std::string& text, const std::string& source,
                    const std::vector<std::string>& overrides);

// A LOWER bound of what the fullest rank of a recipe's layout holds, from its products alone:
// its parameters and their gradients in fp32 and one micro-batch's residual stream through its
// layers and its logits, nothing else (no optimizer state, no other activations, no in-flight
// micro-batches). Recipes whose bound passes kMaxRankBytes are refused: they cannot fit anywhere.
// Each part names the key most responsible: of its factors, the one furthest above the value
// Mixtral 8x7B gives it.
struct SizeBound {
  struct Blame {
    std::string key;
    double value = 0;
  };
  double params_bytes = 0, activation_bytes = 0;
  Blame params_blame, activations_blame;
  double total() const { return params_bytes + activation_bytes; }
};
SizeBound size_bound(const Recipe& recipe);
inline constexpr double kMaxRankBytes = 64.0 * (1ull << 40);  // 64 TiB: beyond any device or host

// Checks the layout against `world` ranks and derives parallel.dp, parallel.edp and
// parallel.sequence_parallel. Throws InputError naming the key at fault.
void resolve_layout(Recipe& recipe, int64_t world);

// The process grids of a (resolved) parallel section.
Layout layout_of(const ParallelConfig& parallel);

// The ranks a recipe needs when it fixes dp (tp · dp · pp), or 0 when dp is left to the world size.
int64_t required_world(const Recipe& recipe);

// Every key with its resolved value, as YAML (what run.dir/recipe.resolved.yaml holds); parses back
// to the same Recipe.
// kDerivedAsNull writes the keys outside `model` whose value is what they derive from others
// (parallel.sequence_parallel, ...) as null, so that they follow the others when a user edits the
// file; the model's keys stay explicit (an imported model's shape must not move with data.seq_len).
enum class YamlKeys : uint8_t { kResolved, kDerivedAsNull };
std::string to_yaml(const Recipe& recipe, YamlKeys keys = YamlKeys::kResolved);

// One key of the schema, as `check --schema` and the README describe it.
struct KeyInfo {
  std::string path;      // dotted: "model.moe.top_k"
  std::string type;      // "integer", "number", "boolean", "string", "cosine | linear | ...", ...
  std::string fallback;  // the default: a value, "required", "null", or how it is derived
  std::string range;     // ">= 1", "(0, 1)", or "" for any value of the type
  std::string meaning;
};
// Every key (and every section that may be null), in schema order.
std::vector<KeyInfo> recipe_keys();
// `tramontane check --schema`: one key a line, starting with its dotted path.
std::string schema_text();
// The README's recipe table (markdown), generated from the schema.
std::string schema_markdown();

}  // namespace tmt
