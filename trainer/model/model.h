// Model: this rank's share of the transformer — token embedding, its pipeline stage's blocks, final
// RMSNorm, LM head and the cross-entropy loss — with forward and backward written out by hand.
//
//   x_0 = E[tokens]                                   [T, D]
//   x_{l+1} = Block_l(x_l)                             (block.h)
//   logits = RMSNorm(x_L) W_headᵀ                      [T, V]   (W_head = E when tie_embeddings)
//   loss = mean over target tokens of CE(logits, target) + Σ_MoE layers (aux + z)
//
// Which share (ModelShard): a pipeline stage holds the layers [begin, end) the pipeline split gives
// it (pipeline/stages.h), the first stage also the embedding, the last the final norm, the head
// and the loss. Under tensor parallelism the residual stream is this rank's sequence chunk
// [T/tp, D] (layer_env.h), and the
// embedding and the head are vocab-parallel: rank r holds rows [r·V/tp, (r+1)·V/tp) of each; the
// embedding's partial rows are reduce-scattered to the chunks, and the loss is the vocab-parallel
// cross-entropy over logits [T, V/tp] (parallel/vocab_parallel.h) — the full logits never exist.
//
// A pipeline stage keeps the activations of several micro-batches at once: `in_flight` slots (as
// many as the schedule asks for, pipeline/one_f_one_b.h), each a full set of the stage's
// activations; the slots share the parameters. Under interleaved 1F1B (parallel.vpp) a stage
// holds several model chunks, non-adjacent layer ranges (pipeline/stages.h): each chunk has its
// own slots, and the embedding sits with the chunk that starts at layer 0, the head with the one
// that ends the model. One parameter store, one activations arena and one scratch hold them all,
// so the optimizer, the gradient sync and checkpoints see one set of parameters per rank.
// Under full recomputation (ModelRun::recompute, train.recompute: full) a slot keeps only the
// residual stream between its blocks (and the head's tensors on the last stage): the blocks'
// internals live once per stage, one region as large as the largest block's that every block and
// every slot writes in turn (and the MoE layers' kept expert rows one stack, for one layer).
// Backward reruns each block's forward from its saved input just before that block's backward:
// the same routing (the same inputs, weights and expert bias give the same choices), the same
// collectives on every rank of its groups, and its statistics (losses, loads, drops) dropped —
// forward counted them. The rerun's output goes to a scratch tensor: the saved output may still be
// on its way to the next stage.
// Parameters, gradients and activations each live in one arena, sized once; a step allocates
// nothing — except when an MoE layer's experts receive more rows than planned, where the expert
// rows grow (trainer/model/expert_rows.h: the policy).
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "trainer/model/block.h"
#include "trainer/pipeline/stages.h"

namespace tmt {

struct MicroBatch {
  Tensor inputs;   // i32 [B, S]
  Tensor targets;  // i32 [B, S]; negative = ignored
  // The targets on the host when `targets` is on a device (the loss counts them there); null: read
  // them back from `targets`.
  const int32_t* targets_host = nullptr;
};

struct LossParts {
  double lm_loss_sum = 0.0;  // Σ over counted targets of the cross-entropy (last stage)
  int64_t lm_tokens = 0;     // targets counted (last stage)
  double aux_loss = 0.0;     // Σ over this stage's MoE layers (coefficients applied): the
                             // load-balancing and the sequence-wise balance losses
  double z_loss = 0.0;
  std::vector<double> max_load;  // per MoE layer of the whole model: busiest expert / mean (0 for
                                 // layers on other stages)
  int64_t dropped = 0;
  // [MoE layers of the whole model × E]: each expert's assignments over the micro-batch (its
  // whole T, summed over TP; 0 for layers on other stages), for the expert-bias update.
  std::vector<double> expert_load;
};

// How a model computes: its dtype, the micro-batch it runs and the seed its weights start from.
struct ModelRun {
  // f32 (f32 master weights), f64 for gradient checks, or bf16 for mixed precision (f32 master
  // weights and gradients, bf16 weights and activations).
  DType dtype = DType::kF32;
  int64_t micro_batch = 1;  // B sequences
  int64_t seq_len = 0;      // S tokens each
  uint64_t seed = 0;        // the initial weights (params.h)
  // Sizes only: the arenas hold no memory (Arena::DryRun) and nothing is initialised or computed;
  // the model reports its sizes (memory_plan.h) and must not run.
  bool dry = false;
  // Activation recomputation (train.recompute): selective in the layers (layer_env.h); full here:
  // a slot keeps only its blocks' inputs, and backward reruns each block's forward before its
  // backward.
  Recompute recompute = Recompute::kNone;
  // train.precision fp8: the linears' and experts' GEMMs take FP8 operands (gemm.h); none: the
  // dtype's.
  std::optional<Fp8Recipe> fp8 = std::nullopt;
};

// A range of layers a pipeline stage holds, and how many micro-batches' activations it keeps.
struct ModelChunk {
  StageRange layers;
  int64_t in_flight = 1;
};

// Which part of the model this rank holds, and the groups it shares the work with.
struct ModelShard {
  Communicator* tp = nullptr;       // tensor parallelism (null: none)
  Communicator* experts = nullptr;  // the etp x ep ranks the experts are spread over (null: none)
  int64_t etp = 1;
  // Context parallelism (null: none): each sequence split over these ranks
  // (parallel/context_parallel.h); the model then holds 2·C of each sequence's S tokens.
  Communicator* cp = nullptr;
  // This pipeline stage's chunks in model order: one with 1F1B, parallel.vpp under interleaving.
  // Empty: every layer, one slot.
  std::vector<ModelChunk> chunks;
  int64_t shard_multiple = 1;  // parameter groups are padded to a multiple of it (ZeRO-1)
};

class Model {
 public:
  Model(const ModelConfig& config, const ModelRun& run, const Context& ctx,
        const ModelShard& shard = {});
  // The layers hold pointers to the model's config: a model stays where it was made.
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  ParamStore& params() { return params_; }
  // The aux-loss-free update of each of this stage's expert biases (model.moe.bias_update_rate):
  // bias_e += rate · sign(mean_e load - load_e), `load` as LossParts::expert_load summed over
  // every rank that routed the layer's tokens of the step. Nothing without an expert bias.
  void update_expert_bias(const std::vector<double>& load);
  // The arenas' sizes: activations (every in-flight slot) and the shared scratch, and the most of
  // the scratch any op has used so far.
  size_t activations_arena_bytes() const { return acts_.capacity(); }
  size_t scratch_arena_bytes() const { return scratch_.capacity(); }
  size_t scratch_peak_bytes() const { return scratch_.peak(); }
  const ParamStore& params() const { return params_; }
  // Whether this rank holds the embedding (reads the inputs) and the head (reads the targets).
  bool first_stage() const { return chunks_.front().embedding; }
  bool last_stage() const { return chunks_.back().head; }
  // This stage's layers, a range per chunk.
  std::vector<StageRange> layers() const;
  // Slots: every chunk's, chunk after chunk. Chunk c's k-th slot is slot(c, k).
  int64_t in_flight() const { return static_cast<int64_t>(slots_.size()); }
  int64_t chunks() const { return static_cast<int64_t>(chunks_.size()); }
  int64_t chunk_slots(int64_t chunk) const {
    return static_cast<int64_t>(chunks_[static_cast<size_t>(chunk)].slots);
  }
  int64_t slot(int64_t chunk, int64_t k) const {
    return static_cast<int64_t>(chunks_[static_cast<size_t>(chunk)].first_slot) + k;
  }
  // Whether a chunk holds the embedding (its passes read the inputs) or the head (the targets).
  bool holds_embedding(int64_t chunk) const {
    return chunks_[static_cast<size_t>(chunk)].embedding;
  }
  bool holds_head(int64_t chunk) const { return chunks_[static_cast<size_t>(chunk)].head; }
  const Context& context() const { return env_.ctx; }
  // How the micro-batch's sequences are split over context-parallel ranks (one rank: not at all).
  const ContextParallel& context_parallel() const { return env_.cp; }

  // The pipeline's view, one micro-batch of one chunk in slot k (< in_flight()):
  // what this stage receives (its first block's input, [T/tp, D]; unused on the first stage),
  Tensor stage_input(int64_t slot) { return slots_[static_cast<size_t>(slot)].x.front(); }
  // what it sends on (its last block's output),
  Tensor stage_output(int64_t slot) { return slots_[static_cast<size_t>(slot)].x.back(); }
  // and the gradient buffer backward() works in: on entry (stages but the last) the gradient of
  // stage_output, on return the gradient of stage_input, to send back.
  Tensor stage_grad(int64_t slot) { return slots_[static_cast<size_t>(slot)].dx; }
  LossParts forward(int64_t slot, const MicroBatch& batch, double lm_grad_scale, double aux_weight);
  // Gradients ACCUMULATE into params().
  void backward(int64_t slot, const MicroBatch& batch);

  // One stage, one micro-batch: forward and backward. lm_grad_scale multiplies the
  // cross-entropy's gradient (1 / target tokens in the step); aux_weight multiplies the router
  // losses' (1 / micro-batches in the step).
  LossParts forward_backward(const MicroBatch& batch, double lm_grad_scale, double aux_weight);
  // Forward only (validation), one stage.
  LossParts forward(const MicroBatch& batch);

  size_t activation_bytes() const {
    return acts_.capacity() + scratch_.capacity() + expert_rows_.capacity_bytes();
  }
  // The MoE layers' expert-side rows (expert_rows.h): as planned, and as grown.
  const ExpertRows& expert_rows() const { return expert_rows_; }
  // The most device workspace one op of this rank's share borrows in a call (the ops share one
  // block, kernels/base/workspace.h), from the ops' queries at its shapes; 0 on the CPU. The owner
  // of the context the model was given reserves it before the first forward.
  size_t workspace_bytes() const;

 private:
  // A chunk's layers [begin, end), whether it holds the embedding (begin 0) and the head (end
  // n_layers), its slots [first_slot, first_slot + slots) and, per layer, the layer's index among
  // the model's MoE layers (-1: a dense layer).
  struct Chunk {
    int64_t begin = 0, end = 0;
    bool embedding = false, head = false;
    size_t first_slot = 0, slots = 0;
    std::vector<int64_t> moe_index;
  };
  struct Slot {
    size_t chunk = 0;
    std::vector<std::unique_ptr<Block>> blocks;
    std::vector<Tensor> x;  // residual stream: the stage's input .. each block's output [Tl, D]
    Tensor dx;              // [Tl, D]
    // last stage: the final norm's output [Tl, D] and rstd [Tl], that output gathered [T, D],
    // the logits [T, V/tp] (their gradient after the loss), the per-token losses [T] and the
    // vocab-parallel cross-entropy's statistics f64 [3, T]
    Tensor normed, norm_rstd, normed_full, logits, losses, ce_stats;
    double aux_weight = 0;  // the forward's, for the blocks' rerun under full recomputation
  };
  bool full() const { return recompute_ == Recompute::kFull; }
  // A slot's blocks: its own, or under full recomputation the one set every slot of its chunk
  // shares (its first slot's).
  std::vector<std::unique_ptr<Block>>& blocks(size_t slot) {
    return slots_[full() ? chunks_[slots_[slot].chunk].first_slot : slot].blocks;
  }
  void allocate_activations(Arena& acts, Arena& scratch);
  // Plans the MoE layers' expert rows (expert_rows.h) and binds each slot's layers to them.
  void plan_expert_rows();
  void loss(Slot& s, const MicroBatch& batch, double lm_grad_scale, LossParts& parts);

  // The temporaries of the passes through the embedding and the head, each taken and released
  // around its use (the blocks' passes take theirs in between):
  // the embedding's partial rows [T, D] (forward, tp > 1) and dx gathered [T, D] (backward);
  struct EmbeddingTemps {
    Tensor partial, dx_full;
  };
  EmbeddingTemps embedding_temps(Arena& scratch, const Tensor& dx) const;
  // the final norm's output gradient [Tl, D] and its partial sum [T, D] (tp > 1).
  struct HeadTemps {
    Tensor dnormed, dnormed_partial;
  };
  HeadTemps head_temps(Arena& scratch) const;

  ModelConfig config_;
  LayerEnv env_;
  Recompute recompute_ = Recompute::kNone;
  std::vector<Chunk> chunks_;
  int64_t vocab_local_ = 0, vocab_start_ = 0;
  int64_t moe_layers_ = 0;  // of the whole model
  ParamStore params_;
  size_t embedding_ = 0, final_norm_ = 0, head_ = 0;
  std::vector<Slot> slots_;
  Arena acts_, scratch_;
  ExpertRows expert_rows_;
  // RoPE: positions [T] i32, the tables [S, Dr/2], Llama 4's query scale [S] (when it is on)
  Tensor positions_, rope_cos_, rope_sin_, rope_q_scale_;
  AttentionLayer::Rope rope_args() const;
  // Host copies of a micro-batch's per-token losses (in env_.stat_dtype()) and targets (last
  // stage), for the loss sum.
  std::vector<std::byte> losses_host_;
  std::vector<int32_t> targets_host_;
};

}  // namespace tmt
