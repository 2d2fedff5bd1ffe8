// Model: this rank's transformer — token embedding, n_layers blocks, final RMSNorm, LM head and the
// cross-entropy loss — with forward and backward written out by hand.
//
//   x_0 = E[tokens]                                   [T, D]
//   x_{l+1} = Block_l(x_l)                             (block.h)
//   logits = RMSNorm(x_L) W_headᵀ                      [T, V]   (W_head = E when tie_embeddings)
//   loss = mean over target tokens of CE(logits, target) + Σ_MoE layers (aux + z)
//
// Parameters, gradients and activations each live in one arena, sized once for a micro-batch of
// train.micro_batch × data.seq_len tokens; a step allocates nothing.
#pragma once

#include <memory>
#include <vector>

#include "trainer/model/block.h"

namespace tmt {

struct MicroBatch {
  Tensor inputs;   // i32 [B, S]
  Tensor targets;  // i32 [B, S]; negative = ignored
};

struct LossParts {
  double lm_loss_sum = 0.0;  // Σ over counted targets of the cross-entropy
  int64_t lm_tokens = 0;     // targets counted
  double aux_loss = 0.0;     // Σ over MoE layers (coefficients applied)
  double z_loss = 0.0;
  std::vector<double> max_load;  // per MoE layer: busiest expert / mean
  int64_t dropped = 0;
};

class Model {
 public:
  // dtype f32 for training; f64 for gradient checks. `ep`: the expert-parallel group (null = none).
  // `shard_multiple`: parameter groups are padded to a multiple of it (ParamStore::allocate).
  Model(const Recipe& recipe, const Context& ctx, DType dtype, int64_t micro_batch,
        Communicator* ep = nullptr, int64_t shard_multiple = 1);

  ParamStore& params() { return params_; }
  const ParamStore& params() const { return params_; }

  // Forward and backward over one micro-batch; gradients ACCUMULATE into params().
  // lm_grad_scale multiplies the cross-entropy's gradient (1 / target tokens in the step);
  // aux_weight multiplies the router losses' (1 / micro-batches in the step).
  LossParts forward_backward(const MicroBatch& batch, double lm_grad_scale, double aux_weight);
  // Forward only (validation).
  LossParts forward(const MicroBatch& batch);

  size_t activation_bytes() const { return acts_.capacity() + scratch_.capacity(); }

 private:
  LossParts run_forward(const MicroBatch& batch, double lm_grad_scale, double aux_weight);
  void allocate_activations(Arena& acts, Arena& scratch);

  const Recipe* recipe_;
  LayerEnv env_;
  ParamStore params_;
  size_t embedding_, final_norm_, head_;
  std::vector<std::unique_ptr<Block>> blocks_;
  Arena acts_, scratch_;
  std::vector<Tensor> x_;  // residual stream x_0 .. x_L, each [T, D]
  Tensor hf_, rstd_f_, logits_, losses_, positions_, rope_cos_, rope_sin_;
};

}  // namespace tmt
