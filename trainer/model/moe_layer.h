// The MoE feed-forward of a block (Mixtral routing):
//
//   logits = h Wrᵀ                                  [T, E]   (router, fp32)
//   p = softmax(logits) (or sigmoid), keep the top-k per token, renormalise their weights w
//   each token's h goes to its k experts; expert e computes SwiGLU with W13[e] [2Fe, D], W2[e] [D,
//   Fe] y += Σ_k w[t,k] · expert_{idx[t,k]}(h[t])
//
// and the two router losses, over the micro-batch's T tokens:
//   load balancing (Switch / Megatron):  aux = aux_loss_coeff · E · Σ_e f_e · P_e
//       f_e = (assignments to e) / (T · K)   P_e = mean_t p[t, e]   (f_e is held constant in
//       backward)
//   router z-loss:                        z = z_loss_coeff · mean_t logsumexp(logits[t])²
// Both are added to the training loss of each MoE layer and weighted like the micro-batch's share
// of the step (aux_weight), so they are per-layer sums and micro-batch means.
//
// Dropless by default: every assignment is computed. With a capacity factor c each expert takes at
// most ⌈c · T · K / E⌉ assignments, the earliest tokens first; a dropped assignment contributes
// nothing (the token keeps its residual and whatever its other experts give).
#pragma once

#include "kernels/moe_dispatch.h"
#include "trainer/model/layer.h"

namespace tmt {

struct MoeStats {
  double aux_loss =
      0.0;  // the coefficient-weighted values as they enter the loss (before aux_weight)
  double z_loss = 0.0;
  double max_load = 0.0;  // max over experts of assignments / mean assignments (1 = balanced)
  int64_t dropped = 0;    // assignments dropped by the capacity limit
};

class MoeLayer {
 public:
  MoeLayer(const LayerEnv& env, int64_t layer, ParamStore& store);
  void allocate(Arena& acts, Arena& scratch);

  // y += MoE(h). aux_weight scales the router losses' gradients (their share of the step's loss).
  MoeStats forward(const Tensor& y, const Tensor& h, double aux_weight);
  // dh = d MoE / dh · dy, plus the router losses' gradients.
  void backward(const Tensor& dh, const Tensor& dy, const Tensor& h);

 private:
  LayerEnv env_;
  ParamStore* store_;
  int64_t experts_, top_k_, hidden_;
  size_t router_, w13_, w2_;
  // activations
  Tensor logits_, probs_, topk_idx_, topk_w_, lse_, dprobs_,
      dlse_;                 // [T,E] [T,E] [T,K] [T,K] [T] [T,E] [T]
  Tensor xp_, gu_, a_, yp_;  // at most T·K rows: [R, D], [R, 2Fe], [R, Fe], [R, D]
  DispatchPlan plan_;
  int64_t rows_ = 0;  // R, the kept assignments of this micro-batch
  Arena* scratch_ = nullptr;

  struct Grads {
    Tensor dyp, da, dgu, dxp, dtopk_w, dlogits;
  };
  Grads alloc_grads(Arena& scratch) const;
};

}  // namespace tmt
