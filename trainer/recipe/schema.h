// The recipe schema: every key of every section, written once.
//
// Each section is one function, `visit(v, section)`, that lists its keys in order with their type
// (from the field), default, range and meaning. Three visitors walk it: the reader (reader.cpp:
// YAML in, every value checked), the writer (to_yaml.cpp: recipe.resolved.yaml out) and the
// describer (describe.cpp: `tramontane check --schema` and the README table). So adding a key is
// one line here plus its field in recipe.h; rules that tie several keys together stay as code in
// recipe.cpp and layout.cpp.
//
// A visitor has these calls (name, field, spec):
//   key       a scalar (integer, number, boolean, string)
//   choice    an enum spelt as in Names<E> (recipe.h)
//   optional  a scalar that may be null, and is null by default (std::optional)
//   list      a list of scalars or of choices
//   section   a nested mapping; optional_section for one that may be null (std::optional)
// A key's default is one of: `fallback` (a value), `derived` (computed from other keys after the
// whole recipe is read, by `derive`; the text says from what), `later` (left for resolve_layout,
// e.g. parallel.dp from the world size), or none of them: required.
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <type_traits>

#include "trainer/recipe/recipe.h"

namespace tmt::recipe_detail {

// The values a number may take: [min, max], either end open or absent.
struct Range {
  std::optional<double> min = {}, max = {};
  bool min_open = false, max_open = false;
};

template <class T>
struct Spec {
  std::optional<T> fallback = {};  // the default value
  // The default is derived from other keys: how, in words, and the function that computes it
  // once every key is read (it may throw InputError through recipe_error; nullopt = required
  // after all).
  std::string_view derived = {};
  std::function<std::optional<T>(const Recipe&)> derive = {};
  // The default is left to resolve_layout (T{} until then, written as null): how, in words.
  std::string_view later = {};
  Range range = {};
  // The writer writes null instead of the value when this says so (the value would contradict a
  // key that replaced it, like first_dense_layers beside a layer_pattern).
  std::function<bool()> null_when = {};
  std::string_view meaning = {};
};

struct SectionSpec {
  bool required = false;
  std::string_view meaning = {};  // for a section that may be null: what null means
};

// The sections, innermost first. R is the section's struct, const for the writer and describer.
template <class V, class R>
requires std::is_same_v<std::remove_const_t<R>, RopeScaling>
void visit(V& v, R& r) {
  v.choice("type", r.type,
           {.fallback = RopeScalingType::kNone, .meaning = "RoPE context extension"});
  v.key("factor", r.factor,
        {.fallback = 1.0,
         .range = {.min = 0, .min_open = true},
         .meaning = "context extension factor s (yarn: > 1)"});
  v.key("original_max_seq_len", r.original_max_seq_len,
        {.fallback = 0,
         .range = {.min = 0},
         .meaning = "the context the model was trained at before extension (yarn: > 0)"});
  v.key("beta_fast", r.beta_fast,
        {.fallback = 32.0, .meaning = "yarn: wavelengths with more turns keep their frequency"});
  v.key("beta_slow", r.beta_slow,
        {.fallback = 1.0,
         .meaning = "yarn: wavelengths with fewer turns are fully interpolated (0 < "
                    "beta_slow < beta_fast)"});
  v.optional("mscale", r.mscale,
             {.range = {.min = 0, .min_open = true},
              .meaning = "yarn, as transformers: with mscale_all_dim, the attention factor is "
                         "g(s, mscale) / g(s, mscale_all_dim), g(s, a) = 0.1·a·ln s + 1; null = "
                         "g(s, 1)"});
  v.optional("mscale_all_dim", r.mscale_all_dim,
             {.range = {.min = 0, .min_open = true},
              .meaning = "yarn: the denominator's mscale (see mscale)"});
  v.optional("attention_factor", r.attention_factor,
             {.range = {.min = 0, .min_open = true},
              .meaning = "yarn: the factor m on cos and sin (q·k scaled by m²) instead of the "
                         "mscale rule"});
  v.key("truncate", r.truncate,
        {.fallback = true, .meaning = "yarn: round the ramp's ends down and up to whole pairs"});
  v.key("llama_4_beta", r.llama_4_beta,
        {.fallback = 0.0,
         .range = {.min = 0},
         .meaning = "Llama 4 attention scaling: queries times 1 + beta·ln(1 + floor(pos / "
                    "llama_4_original_max_seq_len)); 0 = off"});
  v.key("llama_4_original_max_seq_len", r.llama_4_original_max_seq_len,
        {.derived = "model.rope_scaling.original_max_seq_len",
         .derive = [](const Recipe& rec) { return rec.model.rope_scaling.original_max_seq_len; },
         .range = {.min = 0},
         .meaning = "the length in llama_4_beta's formula (> 0 when it is on)"});
}

template <class V, class R>
requires std::is_same_v<std::remove_const_t<R>, MoeConfig>
void visit(V& v, R& e) {
  v.key("n_experts", e.n_experts, {.range = {.min = 1}, .meaning = "routed experts E"});
  v.key("top_k", e.top_k,
        {.range = {.min = 1}, .meaning = "experts per token K (at most n_experts)"});
  v.key("expert_ffn_hidden", e.expert_ffn_hidden,
        {.range = {.min = 1}, .meaning = "hidden size of each routed expert's SwiGLU"});
  v.key("n_shared_experts", e.n_shared_experts,
        {.fallback = 0, .range = {.min = 0}, .meaning = "always-on experts added for every token"});
  v.key("shared_expert_ffn_hidden", e.shared_expert_ffn_hidden,
        {.derived = "model.moe.expert_ffn_hidden",
         .derive = [](const Recipe& r) { return r.model.moe->expert_ffn_hidden; },
         .range = {.min = 1},
         .meaning = "hidden size of each shared expert"});
  v.key("first_dense_layers", e.first_dense_layers,
        {.fallback = 0,
         .range = {.min = 0},
         .null_when = [&e] { return !e.layer_pattern.empty(); },
         .meaning = "layers [0, N) have the dense FFN, the rest MoE"});
  v.list("layer_pattern", e.layer_pattern,
         {.meaning = "dense or moe for each layer, instead of first_dense_layers"});
  v.choice("score", e.score,
           {.fallback = RouterScore::kSoftmax, .meaning = "router scores over the experts"});
  v.key("aux_loss_coeff", e.aux_loss_coeff,
        {.fallback = 0.01,
         .range = {.min = 0},
         .meaning = "load-balancing loss weight (Switch form, per MoE layer)"});
  v.key("z_loss_coeff", e.z_loss_coeff,
        {.fallback = 0.0, .range = {.min = 0}, .meaning = "router z-loss weight"});
  v.optional("capacity_factor", e.capacity_factor,
             {.range = {.min = 0, .min_open = true},
              .meaning = "each expert takes at most ceil(c·T·K/E) of a rank's "
                         "assignments; null = dropless"});
  v.key("routed_scaling_factor", e.routed_scaling_factor,
        {.fallback = 1.0,
         .range = {.min = 0, .min_open = true},
         .meaning = "the routed experts' weights are multiplied by it after renormalisation "
                    "(DeepSeek-V3)"});
  v.key("n_groups", e.n_groups,
        {.fallback = 1,
         .range = {.min = 1, .max = 32},
         .meaning = "group-limited routing: the experts form n_groups equal groups of "
                    "consecutive experts (>= 2 each when n_groups > 1); 1 = off"});
  v.key("topk_groups", e.topk_groups,
        {.derived = "model.moe.n_groups",
         .derive = [](const Recipe& r) { return r.model.moe->n_groups; },
         .range = {.min = 1},
         .meaning = "only the topk_groups best groups (a group's score: the sum of its two "
                    "largest biased scores) are eligible for a token (<= n_groups)"});
  v.key("bias_update_rate", e.bias_update_rate,
        {.fallback = 0.0,
         .range = {.min = 0},
         .meaning = "aux-loss-free balancing (sigmoid scores only): a per-layer expert bias "
                    "added to the scores for the choice, moved by rate · sign(mean load - "
                    "load) after each step; 0 = no bias"});
  v.key("seq_aux_loss_coeff", e.seq_aux_loss_coeff,
        {.fallback = 0.0,
         .range = {.min = 0},
         .meaning = "sequence-wise balance loss weight (DeepSeek-V3), per MoE layer"});
}

template <class V, class R>
requires std::is_same_v<std::remove_const_t<R>, MlaConfig>
void visit(V& v, R& a) {
  v.key("q_lora_rank", a.q_lora_rank,
        {.fallback = 0,
         .range = {.min = 0},
         .meaning = "rank of the queries' latent (normed, then up-projected); 0 = no latent"});
  v.key("kv_lora_rank", a.kv_lora_rank,
        {.range = {.min = 1}, .meaning = "rank of the keys' and values' shared latent"});
  v.key("qk_nope_head_dim", a.qk_nope_head_dim,
        {.range = {.min = 1}, .meaning = "per-head query/key part without RoPE"});
  v.key("qk_rope_head_dim", a.qk_rope_head_dim,
        {.range = {.min = 2},
         .meaning = "per-head query/key part with RoPE, one key part shared by all heads; even"});
  v.key("v_head_dim", a.v_head_dim, {.range = {.min = 1}, .meaning = "per-head value size"});
}

template <class V, class R>
requires std::is_same_v<std::remove_const_t<R>, ModelConfig>
void visit(V& v, R& m) {
  v.key("vocab_size", m.vocab_size, {.range = {.min = 1}, .meaning = "vocabulary size V"});
  v.key("d_model", m.d_model, {.range = {.min = 1}, .meaning = "residual stream width D"});
  v.key("n_layers", m.n_layers, {.range = {.min = 1}, .meaning = "transformer blocks"});
  v.key("n_heads", m.n_heads, {.range = {.min = 1}, .meaning = "query heads H"});
  v.key("n_kv_heads", m.n_kv_heads,
        {.derived = "model.n_heads",
         .derive = [](const Recipe& r) { return r.model.n_heads; },
         .range = {.min = 1},
         .meaning = "key/value heads (grouped-query attention; divides n_heads)"});
  v.key("head_dim", m.head_dim,
        {.derived = "d_model / n_heads",
         .derive =
             [](const Recipe& r) {
               const ModelConfig& model = r.model;
               if (model.d_model % model.n_heads != 0) {
                 recipe_error(r, "model.n_heads",
                              fmt::format("{} does not divide model.d_model = {}; give "
                                          "model.head_dim",
                                          model.n_heads, model.d_model));
               }
               return model.d_model / model.n_heads;
             },
         .range = {.min = 1},
         .meaning = "per-head size Dh; even (RoPE)"});
  v.key("ffn_hidden", m.ffn_hidden,
        {.derived = "required with dense layers, else 0",
         .derive = [](const Recipe& r) -> std::optional<int64_t> {
           if (r.model.has_dense_layers()) return std::nullopt;
           return 0;
         },
         .range = {.min = 0},
         .meaning = "hidden size of the dense SwiGLU layers"});
  v.key("norm_eps", m.norm_eps,
        {.fallback = 1e-5, .range = {.min = 0, .min_open = true}, .meaning = "RMSNorm epsilon"});
  v.key("max_seq_len", m.max_seq_len,
        {.derived = "data.seq_len",
         .derive = [](const Recipe& r) { return r.data.seq_len; },
         .range = {.min = 1},
         .meaning = "longest sequence the RoPE tables cover"});
  v.key("rope_theta", m.rope_theta,
        {.fallback = 10000.0, .range = {.min = 0, .min_open = true}, .meaning = "RoPE base"});
  v.key("rope_interleaved", m.rope_interleaved,
        {.fallback = false,
         .meaning = "RoPE turns pairs (2i, 2i+1) (GPT-J, Mistral's own format) instead of (i, i + "
                    "Dr/2) (transformers' rotate-half)"});
  v.key("partial_rotary_factor", m.partial_rotary_factor,
        {.fallback = 1.0,
         .range = {.min = 0, .max = 1, .min_open = true},
         .meaning = "only the first Dr = int(head_dim · factor) dims of each head rotate (even); "
                    "the rest pass through"});
  v.section("rope_scaling", m.rope_scaling, {});
  v.optional("sliding_window", m.sliding_window,
             {.range = {.min = 1},
              .meaning = "attend to the last W tokens only; null = full causal "
                         "attention"});
  v.key("tie_embeddings", m.tie_embeddings,
        {.fallback = false, .meaning = "the LM head is the embedding"});
  v.key("init_std", m.init_std,
        {.fallback = 0.02,
         .range = {.min = 0, .min_open = true},
         .meaning = "std of the normal init (output projections / sqrt(2·n_layers))"});
  v.optional_section("moe", m.moe, {.meaning = "null = a dense model"});
  v.choice("attention", m.attention,
           {.fallback = AttentionKind::kGqa,
            .meaning = "gqa: grouped-query attention; mla: multi-head latent attention "
                       "(DeepSeek-V3), sized by model.mla"});
  v.optional_section("mla", m.mla, {.meaning = "null = not used (needed by attention: mla)"});
}

template <class V, class R>
requires std::is_same_v<std::remove_const_t<R>, ParallelConfig>
void visit(V& v, R& p) {
  v.key("tp", p.tp,
        {.fallback = 1,
         .range = {.min = 1},
         .meaning = "tensor-parallel size (with sequence parallelism)"});
  v.key("cp", p.cp,
        {.fallback = 1,
         .range = {.min = 1},
         .meaning = "context-parallel size: each sequence split into 2·cp chunks, rank i holding "
                    "chunks i and 2·cp-1-i, attention over the all-gathered keys and values"});
  v.key("pp", p.pp, {.fallback = 1, .range = {.min = 1}, .meaning = "pipeline stages (1F1B)"});
  v.key("vpp", p.vpp,
        {.fallback = 1,
         .range = {.min = 1},
         .meaning = "model chunks per pipeline stage (virtual stages: interleaved 1F1B, bubble "
                    "(pp-1)/(vpp·m) for m micro-batches)"});
  v.key("dp", p.dp,
        {.later = "world / (tp·cp·pp)",
         .range = {.min = 1},
         .meaning = "data-parallel size; derived from the world size when "
                    "left out"});
  v.key(
      "ep", p.ep,
      {.fallback = 1, .range = {.min = 1}, .meaning = "expert-parallel size (divides n_experts)"});
  v.key("etp", p.etp,
        {.fallback = 1, .range = {.min = 1}, .meaning = "expert tensor-parallel size"});
  v.key("sequence_parallel", p.sequence_parallel,
        {.derived = "tp > 1",
         .derive = [](const Recipe& r) { return r.parallel.tp > 1; },
         .meaning = "split the sequence over TP between the blocks (must be on when tp > 1)"});
  v.key("zero1", p.zero1,
        {.fallback = false,
         .meaning = "distributed optimizer: AdamW state sharded over the data-parallel ranks"});
  v.list("pp_layers", p.pp_layers,
         {.meaning = "layers per pipeline stage, pp·vpp entries in model order with vpp > 1; "
                     "empty = as even as possible"});
  v.choice("comm", p.comm,
           {.fallback = CommKind::kAuto,
            .meaning = "auto: NCCL when training on GPUs and no node runs more ranks than it "
                       "has GPUs, else MPI (device tensors staged through host memory); "
                       "pipeline sends go over MPI for now"});
}

template <class V, class R>
requires std::is_same_v<std::remove_const_t<R>, SyntheticConfig>
void visit(V& v, R& s) {
  v.key("branching", s.branching,
        {.fallback = 4,
         .range = {.min = 1},
         .meaning = "successors of each token (at most vocab_size)"});
  v.key("concentration", s.concentration,
        {.fallback = 1.0,
         .range = {.min = 0, .min_open = true},
         .meaning = "spread of the successor probabilities"});
  v.key("seed", s.seed,
        {.fallback = 1234,
         .range = {.min = 0},
         .meaning = "the chain itself (sampling follows train.seed)"});
}

template <class V, class R>
requires std::is_same_v<std::remove_const_t<R>, DataConfig>
void visit(V& v, R& d) {
  v.choice("source", d.source,
           {.fallback = DataSourceKind::kSynthetic,
            .meaning = "synthetic: a random Markov chain whose optimal loss is known; shards: "
                       "token shards from `tramontane prepare`"});
  v.list("paths", d.paths, {.meaning = "shard files or directories (the train split)"});
  v.list("val_paths", d.val_paths,
         {.meaning = "validation shards; empty = the val/ directory beside each train/ one"});
  v.key("seq_len", d.seq_len, {.range = {.min = 1}, .meaning = "tokens per sequence S"});
  v.section("synthetic", d.synthetic, {});
}

template <class V, class R>
requires std::is_same_v<std::remove_const_t<R>, OptimizerConfig>
void visit(V& v, R& o) {
  v.key("lr", o.lr,
        {.fallback = 3e-4,
         .range = {.min = 0, .min_open = true},
         .meaning = "peak learning rate (AdamW)"});
  v.key("beta1", o.beta1,
        {.fallback = 0.9,
         .range = {.min = 0, .max = 1, .min_open = true, .max_open = true},
         .meaning = "AdamW's first-moment decay"});
  v.key("beta2", o.beta2,
        {.fallback = 0.95,
         .range = {.min = 0, .max = 1, .min_open = true, .max_open = true},
         .meaning = "AdamW's second-moment decay"});
  v.key("eps", o.eps,
        {.fallback = 1e-8,
         .range = {.min = 0, .min_open = true},
         .meaning = "AdamW's denominator term"});
  v.key("weight_decay", o.weight_decay,
        {.fallback = 0.1,
         .range = {.min = 0},
         .meaning = "decoupled weight decay of every matrix (not the norms)"});
  v.key(
      "grad_clip", o.grad_clip,
      {.fallback = 1.0, .range = {.min = 0}, .meaning = "global gradient-norm clipping; 0 = off"});
}

template <class V, class R>
requires std::is_same_v<std::remove_const_t<R>, ScheduleConfig>
void visit(V& v, R& s) {
  v.key("warmup_steps", s.warmup_steps,
        {.fallback = 0,
         .range = {.min = 0},
         .meaning = "linear warmup; longer than train.steps: the peak is never reached"});
  v.choice("decay", s.decay,
           {.fallback = LrDecay::kCosine, .meaning = "after the warmup, down to min_lr"});
  v.key("min_lr", s.min_lr,
        {.fallback = 0.0,
         .range = {.min = 0},
         .meaning = "the learning rate at the end (at most optimizer.lr)"});
  v.key("wsd_decay_fraction", s.wsd_decay_fraction,
        {.fallback = 0.2,
         .range = {.min = 0, .max = 1, .min_open = true},
         .meaning = "wsd: the share of the steps spent in the final decay"});
}

template <class V, class R>
requires std::is_same_v<std::remove_const_t<R>, TrainConfig>
void visit(V& v, R& t) {
  v.key("steps", t.steps, {.range = {.min = 1}, .meaning = "optimizer steps"});
  v.key("global_batch", t.global_batch,
        {.range = {.min = 1},
         .meaning = "sequences per optimizer step, over all data-parallel ranks"});
  v.key("micro_batch", t.micro_batch,
        {.fallback = 1,
         .range = {.min = 1},
         .meaning = "sequences per forward/backward on one data-parallel rank"});
  v.key("seed", t.seed,
        {.fallback = 0, .range = {.min = 0}, .meaning = "initial weights and data order"});
  v.choice("dtype", t.dtype,
           {.fallback = DType::kF32,
            .meaning = "bf16: mixed precision (bf16 weights and activations; f32 master "
                       "weights, gradients, optimizer state, router and loss); needs cuda"});
  v.choice("device", t.device, {.fallback = Device::kCpu, .meaning = "cuda: one GPU per rank"});
  v.key("max_skipped_steps", t.max_skipped_steps,
        {.fallback = 5,
         .range = {.min = 0},
         .meaning = "non-finite steps in a row (skipped) before the run stops"});
  v.choice("recompute", t.recompute,
           {.fallback = Recompute::kNone,
            .meaning = "activation recomputation: selective recomputes the norms' outputs, the "
                       "attention core and the SwiGLU activations in backward; full keeps only "
                       "each block's input and reruns the block's forward in backward; the "
                       "results are those of none"});
  v.choice("precision", t.precision,
           {.fallback = Precision::kDtype,
            .meaning = "the linears' and experts' GEMMs: dtype = in train.dtype; fp8 = e4m3 "
                       "operands with fp32 scales as section fp8 says (the embedding, head, "
                       "router and attention core stay in train.dtype); on the CPU fake "
                       "quantization (the reference), on cuda Hopper's FP8 GEMMs (bf16, "
                       "blockwise, widths in multiples of 16; not yet run on a GPU)"});
  v.key("timeout_s", t.timeout_s,
        {.fallback = 300.0,
         .range = {.min = 0, .min_open = true},
         .meaning = "seconds a rank may wait in one collective before the watchdog names the "
                    "rank that stopped answering and ends the job (exit 1)"});
  v.key("startup_timeout_s", t.startup_timeout_s,
        {.fallback = 600.0,
         .range = {.min = 0, .min_open = true},
         .meaning = "train.timeout_s until the first step is done (communicators, loading a "
                    "checkpoint, the first step) and while a checkpoint is written"});
  v.key("spike_zscore", t.spike_zscore,
        {.fallback = 0.0,
         .range = {.min = 0},
         .meaning = "a loss more than this many standard deviations above the mean of the last "
                    "50 applied steps is a spike (logged; after 50 steps of warm-up); 0 = off"});
  v.choice("spike_action", t.spike_action,
           {.fallback = SpikeAction::kSkip,
            .meaning = "a loss spike's step: skip = not applied, like a non-finite one (counts "
                       "toward max_skipped_steps); log = applied, only reported"});
}

template <class V, class R>
requires std::is_same_v<std::remove_const_t<R>, Fp8Config>
void visit(V& v, R& f) {
  v.choice("recipe", f.recipe,
           {.fallback = Fp8Scaling::kBlockwise,
            .meaning = "blockwise: activations and gradients in 1x128 tiles, weights in 128x128 "
                       "blocks, a scale each (DeepSeek-V3); tensorwise: one scale per tensor "
                       "from its current amax; mxfp8: 1x32 blocks with power-of-two (e8m0) "
                       "scales, weights too (Blackwell's MXFP8)"});
  v.key("pow2_scales", f.pow2_scales,
        {.fallback = false, .meaning = "scales rounded up to powers of two"});
  v.key("dispatch", f.dispatch,
        {.fallback = true,
         .meaning = "the MoE dispatch all-to-all carries e4m3 rows and their 1x128 (mxfp8: "
                    "1x32) scales, the experts' first GEMM takes them as they arrive; the "
                    "combine and the backward's moves stay in train.dtype; tensorwise "
                    "dispatches in train.dtype (its one scale spans every row), and so does "
                    "cuda for now"});
}

template <class V, class R>
requires std::is_same_v<std::remove_const_t<R>, CheckpointConfig>
void visit(V& v, R& c) {
  v.key("every", c.every,
        {.fallback = 0,
         .range = {.min = 0},
         .meaning = "steps between checkpoints; 0 = only at the end"});
  v.key("keep", c.keep, {.fallback = 2, .range = {.min = 1}, .meaning = "newest checkpoints kept"});
  v.key("resume", c.resume,
        {.fallback = true, .meaning = "resume from run.dir/checkpoints/latest when there is one"});
  v.choice("on_error", c.on_error,
           {.fallback = OnCheckpointError::kStop,
            .meaning = "a checkpoint that cannot be written (no space, I/O error, read-only): "
                       "stop = exit 2 naming the path; continue = warn and retry at the next "
                       "checkpoint (the last one of a run must be written); either way latest "
                       "stays the previous one"});
}

template <class V, class R>
requires std::is_same_v<std::remove_const_t<R>, LogConfig>
void visit(V& v, R& l) {
  v.key("every", l.every,
        {.fallback = 1, .range = {.min = 1}, .meaning = "steps between console lines"});
  v.key("eval_every", l.eval_every,
        {.fallback = 0, .range = {.min = 0}, .meaning = "steps between validations; 0 = none"});
  v.key("eval_batches", l.eval_batches,
        {.fallback = 4, .range = {.min = 1}, .meaning = "micro-batches per validation"});
  v.key("tensorboard", l.tensorboard,
        {.fallback = false,
         .meaning = "also write the step metrics as TensorBoard scalars to "
                    "run.dir/tensorboard/"});
  v.key("per_layer", l.per_layer,
        {.fallback = false,
         .meaning = "also write each block's gradient norm and each MoE layer's tokens per "
                    "expert to metrics.jsonl (grad_norm_layers, grad_norm_other, expert_load)"});
}

template <class V, class R>
requires std::is_same_v<std::remove_const_t<R>, RunConfig>
void visit(V& v, R& r) {
  v.key("dir", r.dir,
        {.fallback = "runs/default",
         .meaning = "receives recipe.resolved.yaml, metrics.jsonl, memory.json and checkpoints/"});
  v.key("name", r.name, {.fallback = "default", .meaning = "run name"});
}

template <class V, class R>
requires std::is_same_v<std::remove_const_t<R>, Recipe>
void visit(V& v, R& r) {
  v.section("model", r.model, {.required = true});
  v.section("parallel", r.parallel, {});
  v.section("data", r.data, {});
  v.section("optimizer", r.optimizer, {});
  v.section("schedule", r.schedule, {});
  v.section("train", r.train, {.required = true});
  v.section("fp8", r.fp8, {});
  v.section("checkpoint", r.checkpoint, {});
  v.section("log", r.log, {});
  v.section("run", r.run, {});
}

}  // namespace tmt::recipe_detail
