// The attention half of a transformer block, with its residual:
//
//   h = RMSNorm(x) · w_norm
//   q = g(pos) RoPE(h Wqᵀ), k = RoPE(h Wkᵀ), v = h Wvᵀ  q: [T, H, Dh]; k, v: [T, Hk, Dh]
//   o = softmax(q kᵀ · Dh^-½ + causal/window mask) v   grouped-query: head h reads kv head
//                                                      h / (H / Hk)
//   x_out = x + o Woᵀ
//
// RoPE (kernels/rope.h) in the model's layout (rotate-half or interleaved pairs) on the first Dr
// dims of each head; g(pos) = 1 + beta·ln(1 + floor(pos / L4)) is Llama 4's query scaling (1 when
// model.rope_scaling.llama_4_beta is 0), from each token's position in its sequence.
//
// Parameters: attn_norm [D], wq [H·Dh, D], wk [Hk·Dh, D], wv [Hk·Dh, D], wo [D, H·Dh] (PyTorch
// layout, out × in).
//
// Tensor parallelism: rank r of tp holds query heads [r·H/tp, (r+1)·H/tp) — its rows of wq and
// columns of wo — and the kv heads they read: Hk/tp of them when tp divides Hk, else the one kv
// head its query heads share, replicated on tp/Hk ranks. The normalised chunk h is all-gathered
// before the projections; o Woᵀ is a partial sum, reduce-scattered back to the chunks.
#pragma once

#include "trainer/model/layer_env.h"

namespace tmt {

class AttentionLayer {
 public:
  AttentionLayer(const LayerEnv& env, int64_t layer, ParamStore& store);
  // Saved activations for one micro-batch, from `acts`; `scratch` serves the passes' temporaries
  // (taken and released inside each call). Called on counting arenas first to size the real ones.
  void allocate(Arena& acts, Arena& scratch);

  struct Rope {
    Tensor positions, cos, sin;  // [T] i32; the tables [S, Dr/2]
    Tensor q_scale = {};         // [S] the queries' position scale g; undefined = 1
    RopeLayout layout = RopeLayout::kHalf;
  };
  // x_out = x + attention(norm(x)); x is kept (backward needs it).
  void forward(const Tensor& x_out, const Tensor& x, const Rope& rope);
  // dx (the gradient of x_out on entry) becomes the gradient of x: dx += d(branch)/dx.
  void backward(const Tensor& dx, const Tensor& x, const Rope& rope);

  // The most device workspace the layer's attention op borrows in a call, forward or backward,
  // at env's shapes and this rank's heads (kernels/attention.h); 0 on the CPU. On CUDA it may
  // build the cuDNN graphs for those shapes.
  static size_t workspace_bytes(const LayerEnv& env);

 private:
  LayerEnv env_;
  ParamStore* store_;
  size_t norm_, wq_, wk_, wv_, wo_;
  int64_t heads_, kv_heads_, head_dim_;  // this rank's
  // activations (T tokens, Tl = T/tp of them in this rank's chunk; H, Hk this rank's heads):
  // rstd [Tl], q [T, H·Dh], k, v [T, Hk·Dh], lse [B, H, S], and kept_ (below)
  Tensor rstd_, q_, k_, v_, lse_;
  Arena* scratch_ = nullptr;

  // What selective recomputation drops (layer_env.h): h [Tl, D], h_full [T, D] (h itself at
  // tp = 1), o [T, H·Dh]; backward recomputes them from x (the norm, with rstd rewritten the same)
  // and from q, k, v (the attention core, lse rewritten the same).
  struct Recomputed {
    Tensor h, h_full, o;
  };
  Recomputed kept_;  // without selective recomputation
  Recomputed recomputed(Arena& arena) const;
  // The pass's: kept_, or taken from the scratch.
  Recomputed recomputed_for_pass() const;

  // forward: the output projection's partial sum [T, D] and its reduced chunk [Tl, D] (tp > 1)
  struct ForwardTemps {
    Tensor partial, received;
  };
  ForwardTemps forward_temps(Arena& scratch) const;
  // backward: dy_full (the gathered dx, [T, D]), dh [Tl, D] and its partial sum dh_partial [T, D],
  // dq [T, H·Dh], dk, dv [T, Hk·Dh], dout [T, H·Dh], dx_norm [Tl, D]
  struct BackwardTemps {
    Tensor dy_full, dh, dh_partial, dq, dk, dv, dout, dx_norm;
  };
  // (dx: the [Tl, D] gradient the pass is given, which dy_full is at tp = 1)
  BackwardTemps backward_temps(Arena& scratch, const Tensor& dx) const;
};

}  // namespace tmt
