#include "trainer/model/model_stats.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace tmt {

ModelStats model_stats(const ModelConfig& m, int64_t seq_len) {
  ModelStats s;
  const int64_t d = m.d_model;
  const int64_t h = m.n_heads;
  int64_t attn = 0, norms = 2 * d, dqk = m.head_dim, dv = m.head_dim, cache = 0;
  if (m.is_mla()) {
    const MlaConfig& a = *m.mla;
    dqk = a.qk_nope_head_dim + a.qk_rope_head_dim;
    dv = a.v_head_dim;
    attn = a.q_lora_rank > 0 ? d * a.q_lora_rank + a.q_lora_rank * h * dqk : d * h * dqk;
    attn += d * (a.kv_lora_rank + a.qk_rope_head_dim) +
            a.kv_lora_rank * h * (a.qk_nope_head_dim + dv) + h * dv * d;
    norms += a.q_lora_rank + a.kv_lora_rank;
    cache = a.kv_lora_rank + a.qk_rope_head_dim;
  } else {
    attn = d * h * m.head_dim + 2 * d * m.n_kv_heads * m.head_dim + h * m.head_dim * d;
    cache = 2 * m.n_kv_heads * m.head_dim;
  }
  s.kv_cache_values_per_token = m.n_layers * cache;
  s.gqa_kv_cache_values_per_token = m.n_layers * m.n_kv_heads * (dqk + dv);
  int64_t total = 0, active_matmul = 0;
  for (int64_t i = 0; i < m.n_layers; ++i) {
    total += attn + norms;
    active_matmul += attn;
    if (m.moe && m.is_moe_layer(i)) {
      const MoeConfig& e = *m.moe;
      const int64_t expert = 3 * d * e.expert_ffn_hidden;
      const int64_t shared = e.n_shared_experts * 3 * d * e.shared_expert_ffn_hidden;
      const int64_t router = d * e.n_experts;
      total += router + e.n_experts * expert + shared;
      active_matmul += router + e.top_k * expert + shared;
      ++s.moe_layers;
    } else {
      total += 3 * d * m.ffn_hidden;
      active_matmul += 3 * d * m.ffn_hidden;
      ++s.dense_layers;
    }
  }
  const int64_t embed = m.vocab_size * d;
  const int64_t head = m.tie_embeddings ? 0 : m.vocab_size * d;
  total += embed + head + d;
  active_matmul += m.vocab_size * d;  // the LM head's matmul, tied or not
  s.total_params = total;
  s.active_params = total - (s.moe_layers > 0 ? s.moe_layers * (m.moe->n_experts - m.moe->top_k) *
                                                    3 * d * m.moe->expert_ffn_hidden
                                              : 0);
  s.embedding_params = embed;
  s.matmul_flops_per_token = 6.0 * static_cast<double>(active_matmul);

  // Mean number of keys a query sees: query i (0-based) sees min(i + 1, window) keys.
  const int64_t window = m.sliding_window.value_or(seq_len);
  double keys = 0;
  for (int64_t i = 0; i < seq_len; ++i) keys += static_cast<double>(std::min(i + 1, window));
  const double mean_keys = seq_len > 0 ? keys / static_cast<double>(seq_len) : 0.0;
  s.attention_flops_per_token = 6.0 * static_cast<double>(m.n_layers * h * (dqk + dv)) * mean_keys;
  return s;
}

std::string human_count(double n) {
  const char* suffix[] = {"", "K", "M", "B", "T"};
  int i = 0;
  while (std::fabs(n) >= 1000.0 && i < 4) {
    n /= 1000.0;
    ++i;
  }
  if (i == 0) return fmt::format("{:.0f}", n);
  return fmt::format("{:.{}f}{}", n, std::fabs(n) >= 100 ? 1 : 2, suffix[i]);
}

}  // namespace tmt
