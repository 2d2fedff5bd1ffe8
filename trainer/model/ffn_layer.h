// A SwiGLU feed-forward network, the FFN of dense layers and the shared experts of MoE layers:
//
//   [g | u] = h W13ᵀ        W13: [2, F, D], W13[0] the gate, W13[1] the up projection
//   a = silu(g) ⊙ u         [T, F]
//   y (+)= a W2ᵀ            W2: [D, F]
//
// Several shared experts of hidden size Fs act as one FFN of hidden size n_shared · Fs (their
// outputs add), so they are stored as one.
//
// Tensor parallelism splits the hidden dimension: rank r holds F/tp gate and up rows of W13
// (column-parallel) and the same columns of W2 (row-parallel), so h is the all-gathered input
// [T, D] and y a partial sum the caller reduce-scatters (block.h).
#pragma once

#include "trainer/model/layer_env.h"

namespace tmt {

class FfnLayer {
 public:
  // `prefix` names the parameters ("layers.0.ffn."), `hidden` is F.
  FfnLayer(const LayerEnv& env, const std::string& prefix, int64_t hidden, ParamStore& store);
  void allocate(Arena& acts, Arena& scratch);

  // y = FFN(h), or y += FFN(h) with accumulate (this rank's partial sum under tp)
  void forward(const Tensor& y, const Tensor& h, bool accumulate);
  // dh = d FFN / dh · dy, or dh += it with accumulate_dh.
  void backward(const Tensor& dh, const Tensor& dy, const Tensor& h, bool accumulate_dh);

 private:
  LayerEnv env_;
  ParamStore* store_;
  int64_t hidden_;  // this rank's share of F
  size_t w13_, w2_;
  Tensor gate_up_, act_;  // [T, 2F], [T, F]; act_ undefined under selective recomputation
  Arena* scratch_ = nullptr;
  // The activation a pass reads: act_, or under selective recomputation (layer_env.h) one taken
  // from the scratch (backward recomputes it from gate_up).
  Tensor act_for_pass() const;

  struct BackwardTemps {
    Tensor dact, dgate_up;  // [T, F], [T, 2F]
  };
  BackwardTemps backward_temps(Arena& scratch) const;
};

}  // namespace tmt
