// A SwiGLU feed-forward network, the FFN of dense layers and the shared experts of MoE layers:
//
//   [g | u] = h W13ᵀ        W13: [2F, D], rows 0..F-1 the gate, F..2F-1 the up projection
//   a = silu(g) ⊙ u         [T, F]
//   y (+)= a W2ᵀ            W2: [D, F]
//
// Several shared experts of hidden size Fs act as one FFN of hidden size n_shared · Fs (their
// outputs add), so they are stored as one.
#pragma once

#include "trainer/model/layer.h"

namespace tmt {

class FfnLayer {
 public:
  // `prefix` names the parameters ("layers.0.ffn."), `hidden` is F.
  FfnLayer(const LayerEnv& env, const std::string& prefix, int64_t hidden, ParamStore& store);
  void allocate(Arena& acts, Arena& scratch);

  // y += FFN(h)
  void forward(const Tensor& y, const Tensor& h);
  // dh (+)= d FFN / dh · dy; accumulate_dh chooses between = and +=.
  void backward(const Tensor& dh, const Tensor& dy, const Tensor& h, bool accumulate_dh);

 private:
  LayerEnv env_;
  ParamStore* store_;
  int64_t hidden_;
  size_t w13_, w2_;
  Tensor gu_, a_;  // [T, 2F], [T, F]
  Arena* scratch_ = nullptr;

  struct Grads {
    Tensor da, dgu;
  };
  Grads alloc_grads(Arena& scratch) const;
};

}  // namespace tmt
