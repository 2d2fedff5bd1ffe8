// Parameter and FLOP counts of a model, from its shape alone (no weights needed).
//
// Parameters per layer (no biases; Mixtral layout):
//   attention   D·H·Dh (q) + 2·D·Hk·Dh (k, v) + H·Dh·D (o) + 2·D (the two RMSNorm weights)
//   MLA         (rq > 0) D·rq + rq + rq·H·(dn+dr), else D·H·(dn+dr)   (q: latent, its norm, up)
//               + D·(rkv+dr) + rkv + rkv·H·(dn+dv)                   (kv: latent, its norm, up)
//               + H·dv·D (o) + 2·D, with rq = q_lora_rank, rkv = kv_lora_rank
//   dense FFN   3·D·F (gate, up, down)
//   MoE FFN     D·E (router) + E·3·D·Fe (routed experts) + S·3·D·Fs (shared experts)
// plus V·D (embedding), V·D (LM head, unless tied) and D (final norm).
// "Active" parameters are those one token touches: the router, K of the E routed experts and all
// the rest (embeddings included, as Mixtral's published 12.9B of 46.7B counts them).
//
// Training FLOPs per token = 6 · (active parameters that enter a matmul: everything but the input
// embedding and the norms) + attention, where attention per layer is 6 · H · (Dqk + Dv) · k̄: QKᵀ
// and PV (2 · H · (Dqk + Dv) · k̄ forward, ×3 with backward; 12 · H · Dh · k̄ for GQA, with
// Dqk = dn + dr and Dv = dv for MLA) over k̄, the mean number of keys a query sees —
// (S+1)/2 for causal attention, fewer with a sliding window. This is the "model FLOPs" MFU is
// measured against.
#pragma once

#include <cstdint>

#include "trainer/recipe/recipe.h"

namespace tmt {

struct ModelStats {
  int64_t total_params = 0;
  int64_t active_params = 0;
  int64_t embedding_params = 0;  // the input embedding (and the head, when tied)
  int64_t dense_layers = 0;
  int64_t moe_layers = 0;
  double matmul_flops_per_token = 0;     // 6 · active matmul parameters
  double attention_flops_per_token = 0;  // 6 · L · H · (Dqk + Dv) · k̄
  // What an inference KV cache holds per token for the whole model, in values: GQA caches k and v,
  // 2 · Hk · Dh per layer; MLA the latent and the shared RoPE key, kv_lora_rank + dr per layer.
  int64_t kv_cache_values_per_token = 0;
  // What grouped-query attention with the model's n_kv_heads would cache for the same heads,
  // 2 · Hk · Dh per layer, for MLA Hk · (dn + dr + dv) (its keys and values expanded from the
  // latent); the same as kv_cache_values_per_token for a GQA model.
  int64_t gqa_kv_cache_values_per_token = 0;
  double flops_per_token() const { return matmul_flops_per_token + attention_flops_per_token; }
};

ModelStats model_stats(const ModelConfig& model, int64_t seq_len);

// "46.70B", "12.9M", "512": for people, three significant digits.
std::string human_count(double n);

}  // namespace tmt
