// Multi-head latent attention (DeepSeek-V2/V3, Mistral Large 3, Mistral Small 4), with its
// residual — as Hugging Face transformers' DeepseekV3Attention and Mistral4Attention:
//
//   h       = RMSNorm(x) · w_norm                                          [T, D]
//   q       = RMSNorm(h Wq_aᵀ) · w_q_a_norm · Wq_bᵀ   (q_lora_rank > 0)      [T, H·(dn+dr)]
//           = h Wqᵀ                                 (q_lora_rank = 0)
//   c       = h Wkv_aᵀ                                                      [T, kv_lora_rank + dr]
//   kv      = RMSNorm(c[:, :kv_lora_rank]) · w_kv_a_norm · Wkv_bᵀ            [T, H·(dn+dv)]
//   (the first RMSNorm with model.norm_eps, the two latent ones with 1e-6, as transformers)
//   per head: q = g(p) · [q_nope (dn), RoPE(q_pe) (dr)], k = [k_nope (dn), RoPE(c[:, kv_lora_rank:])],
//   the one RoPE key shared by every head, v = kv's last dv of the head; RoPE in the model's
//   layout (rotate-half or interleaved pairs) and g(p) Llama 4's query scale (1 without it)
//   o       = softmax(q kᵀ · scale + causal/window mask) v                   [T, H·dv]
//   scale   = 1 / sqrt(dn + dr), times yarn's mscale(factor, mscale_all_dim)² when given
//   x_out   = x + o Woᵀ
//
// Parameters (PyTorch layout, out × in): norm [D], wq_a [rq, D], q_a_norm [rq], wq_b [H·(dn+dr),
// rq] (or wq [H·(dn+dr), D] without the query latent), wkv_a [kv_lora_rank + dr, D], kv_a_norm
// [kv_lora_rank], wkv_b [H·(dn+dv), kv_lora_rank] (each head's rows: dn key rows, then dv value
// rows), wo [D, H·dv].
//
// Tensor parallelism: rank r of tp holds heads [r·H/tp, (r+1)·H/tp): its rows of wq_b (or wq) and
// wkv_b and its columns of wo. The down-projections wq_a and wkv_a and their norms are replicated
// (tp_replicas = tp) and computed on the gathered sequence on every rank; each rank's backward
// through them carries only its heads' part of the gradient, and the parts add up (the TP-replica
// sum of grad_sync, and the reduce-scatter of the input gradient), since everything between is
// linear in it.
//
// Held activations order each query and key head [pe | nope] (the parameters keep transformers'
// [nope | pe]): q·k is the same, and one rope_fwd rotates the pe part and scales the whole query.
#pragma once

#include "trainer/model/attention_layer.h"
#include "trainer/model/layer_env.h"

namespace tmt {

class MlaLayer {
 public:
  MlaLayer(const LayerEnv& env, int64_t layer, ParamStore& store);
  void allocate(Arena& acts, Arena& scratch);

  using Rope = AttentionLayer::Rope;  // tables [S, dr/2]
  // x_out = x + attention(norm(x)); x is kept (backward needs it).
  void forward(const Tensor& x_out, const Tensor& x, const Rope& rope);
  // dx (the gradient of x_out on entry) becomes the gradient of x.
  void backward(const Tensor& dx, const Tensor& x, const Rope& rope);

  // As AttentionLayer::workspace_bytes, at MLA's head dims.
  static size_t workspace_bytes(const LayerEnv& env);

 private:
  LayerEnv env_;
  ParamStore* store_;
  size_t norm_, wq_a_ = 0, q_a_norm_ = 0, wq_ /* wq_b, or wq */, wkv_a_, kv_a_norm_, wkv_b_, wo_;
  int64_t heads_;  // this rank's, Hl
  int64_t rq_, rkv_, dn_, dr_, dv_;
  int64_t dqk() const { return dn_ + dr_; }
  bool q_lora() const { return rq_ > 0; }

  // activations (T tokens, Tl of them in this rank's chunk):
  // rstd [Tl]; qa [T, rq], qa_rstd [T] (with the query latent); q [T, Hl·(dr+dn)] (RoPE and the
  // position scale applied, rope-first); ckv [T, kv_lora_rank], ckv_rstd [T]; k [T, Hl·(dr+dn)]
  // (rope-first), v [T, Hl·dv], lse [B, Hl, S]; and kept_ (below)
  Tensor rstd_, qa_, qa_rstd_, q_, ckv_, ckv_rstd_, k_, v_, lse_;
  Arena* scratch_ = nullptr;

  // What selective recomputation drops (layer_env.h): the norms' outputs h [Tl, D] and h_full
  // [T, D] (h at tp = 1), qa_norm [T, rq] (with the query latent), ckv_norm [T, kv_lora_rank], and
  // the attention core's o [T, Hl·dv]; backward recomputes them from x, qa, ckv (the norms, their
  // rstd rewritten the same) and q, k, v (lse rewritten the same).
  struct Recomputed {
    Tensor h, h_full, qa_norm, ckv_norm, o;
  };
  Recomputed kept_;  // without selective recomputation
  Recomputed recomputed(Arena& arena) const;
  Recomputed recomputed_for_pass() const;

  // forward: q [T, Hl·(dn+dr)] (projected, [nope | pe]), c [T, kv_lora_rank + dr], kv [T,
  // Hl·(dn+dv)], pe [T, dr] (the RoPE key, rotated apart), the output projection's partial sum
  // [T, D] and its reduced chunk [Tl, D] (tp > 1)
  struct ForwardTemps {
    Tensor q, c, kv, pe, partial, received;
  };
  ForwardTemps forward_temps(Arena& scratch) const;
  // backward: dy_full [T, D], dout [T, Hl·dv], dq, dk [T, Hl·(dr+dn)] (rope-first), dq_proj [T,
  // Hl·(dn+dr)] (the projection's order), dv [T, Hl·dv], dpe [T, dr], dkv [T, Hl·(dn+dv)], dckv_norm, dckv [T, kv_lora_rank], dc [T, kv_lora_rank + dr], dqa_norm,
  // dqa [T, rq], dh [Tl, D] and its partial sum [T, D], dx_norm [Tl, D]
  struct BackwardTemps {
    Tensor dy_full, dout, dq, dq_proj, dk, dv, dpe, dkv, dckv_norm, dckv, dc, dqa_norm, dqa, dh,
        dh_partial, dx_norm;
  };
  BackwardTemps backward_temps(Arena& scratch, const Tensor& dx) const;

  // Each head of src [R, Hl·(dn+dr)] to dst: [nope | pe] -> [pe | nope] (to_rope_first), or back.
  void reorder_heads(const Tensor& dst, const Tensor& src, bool to_rope_first) const;
};

}  // namespace tmt
