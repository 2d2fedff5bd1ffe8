// Parameter and FLOP counts of a model, from its shape alone (no weights needed).
//
// Parameters per layer (no biases; Mixtral layout):
//   attention   D·H·Dh (q) + 2·D·Hk·Dh (k, v) + H·Dh·D (o) + 2·D (the two RMSNorm weights)
//   dense FFN   3·D·F (gate, up, down)
//   MoE FFN     D·E (router) + E·3·D·Fe (routed experts) + S·3·D·Fs (shared experts)
// plus V·D (embedding), V·D (LM head, unless tied) and D (final norm).
// "Active" parameters are those one token touches: the router, K of the E routed experts and all
// the rest (embeddings included, as Mixtral's published 12.9B of 46.7B counts them).
//
// Training FLOPs per token = 6 · (active parameters that enter a matmul: everything but the input
// embedding and the norms) + attention, where attention per layer is 12 · H · Dh · k̄: QKᵀ and PV
// (2 · 2 · H · Dh · k̄ forward, ×3 with backward) over k̄, the mean number of keys a query sees —
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
  double attention_flops_per_token = 0;  // 12 · L · H · Dh · k̄
  double flops_per_token() const { return matmul_flops_per_token + attention_flops_per_token; }
};

ModelStats model_stats(const ModelConfig& model, int64_t seq_len);

// "46.70B", "12.9M", "512": for people, three significant digits.
std::string human_count(double n);

}  // namespace tmt
