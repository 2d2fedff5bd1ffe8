// The small MoE recipe the parallel tests train: 4 layers (the first dense), 4 query / 2 kv heads,
// 12 experts top-2 with a shared expert, vocab 64, 24 sequences of 16 tokens per step in
// micro-batches of 2 — small enough for 8 ranks on 2 cores, and every layout of up to 8 ranks
// divides it.
#pragma once

namespace tmt::test {

inline constexpr const char* kSmallMoeRecipe = R"(
model:
  vocab_size: 64
  d_model: 32
  n_layers: 4
  n_heads: 4
  n_kv_heads: 2
  ffn_hidden: 48
  moe:
    n_experts: 12
    top_k: 2
    expert_ffn_hidden: 24
    n_shared_experts: 1
    first_dense_layers: 1
    aux_loss_coeff: 0.05
    z_loss_coeff: 0.001
data:
  seq_len: 16
  synthetic:
    branching: 3
optimizer:
  lr: 3.0e-3
schedule:
  warmup_steps: 2
train:
  steps: 10
  global_batch: 24
  micro_batch: 2
  seed: 3
log:
  eval_batches: 5
)";

}  // namespace tmt::test
