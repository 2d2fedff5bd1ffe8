#include "trainer/optimizer.h"

#include <cmath>

#include "kernels/adamw.h"
#include "kernels/reduce.h"

namespace tmt {

double clip_factor(double norm, double clip) {
  if (clip <= 0.0 || !(norm > clip)) return 1.0;
  return clip / norm;
}

Optimizer::Optimizer(const Context& ctx, ParamStore& params, const OptimizerConfig& config)
    : ctx_(ctx), params_(&params), config_(config) {
  size_t bytes = 0;
  for (const ParamGroup& g : params.groups())
    bytes += 2 * Arena::footprint(DType::kF32, g.values.shape);
  state_ = Arena(ctx.device, bytes, "optimizer state");
  for (const ParamGroup& g : params.groups()) {
    moments_.push_back(
        {state_.alloc(DType::kF32, g.values.shape), state_.alloc(DType::kF32, g.values.shape)});
  }
}

void Optimizer::step(double lr, double grad_scale) {
  ++steps_;
  const auto& groups = params_->groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    AdamWParams p;
    p.lr = lr;
    p.beta1 = config_.beta1;
    p.beta2 = config_.beta2;
    p.eps = config_.eps;
    p.weight_decay = groups[i].decay ? config_.weight_decay : 0.0;
    p.step = steps_;
    p.grad_scale = grad_scale;
    adamw_step(ctx_, groups[i].values, groups[i].grads, moments_[i].m, moments_[i].v, p);
  }
}

}  // namespace tmt
