// AdamW over a ParamStore's groups, with global-norm gradient clipping.
//
// Decoupled weight decay (Loshchilov & Hutter) applies to the decayed groups — every weight matrix:
// attention and FFN projections, experts, router, embedding and LM head — and not to RMSNorm
// weights. The moments m and v are fp32 and laid out like the parameters, one flat tensor per
// group.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/base/arena.h"
#include "kernels/base/context.h"
#include "trainer/model/params.h"
#include "trainer/recipe.h"

namespace tmt {

// The factor that brings a gradient of norm `norm` down to `clip` (1 when clip is 0 or not
// exceeded).
double clip_factor(double norm, double clip);

class Optimizer {
 public:
  Optimizer(const Context& ctx, ParamStore& params, const OptimizerConfig& config);

  // One AdamW step at learning rate lr, the gradients multiplied by grad_scale first.
  void step(double lr, double grad_scale);
  int64_t steps_taken() const { return steps_; }

  struct Moments {
    Tensor m, v;
  };
  const std::vector<Moments>& moments() const { return moments_; }  // one per params.groups() entry

 private:
  Context ctx_;
  ParamStore* params_;
  OptimizerConfig config_;
  Arena state_;
  std::vector<Moments> moments_;
  int64_t steps_ = 0;
};

}  // namespace tmt
