// One transformer block: x_mid = x + Attention(RMSNorm(x)) (grouped-query or multi-head latent,
// model.attention); x_out = x_mid + FFN(RMSNorm(x_mid)),
// where the FFN is dense SwiGLU (first_dense_layers / layer_pattern) or MoE, plus shared experts.
// x, x_mid and x_out are this rank's sequence chunk [T/tp, D] (layer_env.h); the dense FFN and the
// shared experts see the all-gathered h2 and their partial outputs are reduce-scattered back.
#pragma once

#include <memory>

#include "trainer/model/attention_layer.h"
#include "trainer/model/ffn_layer.h"
#include "trainer/model/mla_layer.h"
#include "trainer/model/moe_layer.h"

namespace tmt {

class Block {
 public:
  Block(const LayerEnv& env, int64_t layer, ParamStore& store);
  void allocate(Arena& acts, Arena& scratch);

  using Rope = AttentionLayer::Rope;
  // x_out = block(x); x is kept for backward. Returns the MoE statistics (zeros for a dense layer).
  MoeStats forward(const Tensor& x_out, const Tensor& x, const Rope& rope, double aux_weight);
  // dx: the gradient of x_out on entry, of x on return.
  void backward(const Tensor& dx, const Tensor& x, const Rope& rope);
  bool is_moe() const { return moe_ != nullptr; }
  MoeLayer* moe() { return moe_.get(); }

 private:
  LayerEnv env_;
  ParamStore* store_;
  std::unique_ptr<AttentionLayer> gqa_;  // one of the two attention layers
  std::unique_ptr<MlaLayer> mla_;
  size_t ffn_norm_;
  std::unique_ptr<FfnLayer> dense_;
  std::unique_ptr<MoeLayer> moe_;
  std::unique_ptr<FfnLayer> shared_;
  FfnLayer* ffn_ = nullptr;  // the dense FFN or the shared experts (null: neither)
  Tensor x_mid_, rstd2_;     // [Tl, D], [Tl]
  Arena* scratch_ = nullptr;
  // The FFN norm's output h2 [Tl, D] and h2 gathered for the FFN [T, D] (h2 itself at tp = 1):
  // kept, or under selective recomputation (layer_env.h) taken from the scratch by each pass and
  // recomputed in backward from x_mid (rstd2 rewritten the same).
  struct Normed {
    Tensor h2, h2_full;
  };
  Normed kept_;
  Normed normed(Arena& arena) const;
  Normed normed_for_pass() const { return env_.selective() ? normed(*scratch_) : kept_; }

  // forward: the FFN's partial output [T, D] and its reduced chunk [Tl, D] (tp > 1)
  struct ForwardTemps {
    Tensor partial, received;
  };
  ForwardTemps forward_temps(Arena& scratch) const;
  // backward: dh2 and dx_norm [Tl, D]; for the FFN dy_full (the gathered dx [T, D]), its partial
  // input gradient [T, D] and that reduced [Tl, D] (tp > 1)
  struct BackwardTemps {
    Tensor dh2, dx_norm, dy_full, partial, received;
  };
  BackwardTemps backward_temps(Arena& scratch, const Tensor& dx) const;
};

}  // namespace tmt
