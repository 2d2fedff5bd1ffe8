#include "trainer/model/ffn_layer.h"

#include <cmath>

#include "kernels/linear.h"
#include "kernels/swiglu.h"

namespace tmt {

FfnLayer::FfnLayer(const LayerEnv& env, const std::string& prefix, int64_t hidden,
                   ParamStore& store)
    : env_(env), store_(&store), hidden_(hidden) {
  const ModelConfig& m = env.recipe->model;
  const double out_std = m.init_std / std::sqrt(2.0 * static_cast<double>(m.n_layers));
  w13_ = add_param(store, prefix + "w13", {2 * hidden, m.d_model}, ParamKind::kDense, true,
                   ParamInit::kNormal, m.init_std);
  w2_ = add_param(store, prefix + "w2", {m.d_model, hidden}, ParamKind::kDense, true,
                  ParamInit::kNormal, out_std);
}

void FfnLayer::allocate(Arena& acts, Arena& scratch) {
  gu_ = acts.alloc(env_.dtype, {env_.tokens(), 2 * hidden_});
  a_ = acts.alloc(env_.dtype, {env_.tokens(), hidden_});
  scratch_ = &scratch;
  const size_t mark = scratch.mark();
  alloc_grads(scratch);
  scratch.reset(mark);
}

FfnLayer::Grads FfnLayer::alloc_grads(Arena& scratch) const {
  Grads g;
  g.da = scratch.alloc(env_.dtype, {env_.tokens(), hidden_});
  g.dgu = scratch.alloc(env_.dtype, {env_.tokens(), 2 * hidden_});
  return g;
}

void FfnLayer::forward(const Tensor& y, const Tensor& h) {
  const ParamStore& ps = *store_;
  linear_fwd(env_.ctx, gu_, h, ps[w13_].value, false);
  swiglu_fwd(env_.ctx, a_, gu_);
  linear_fwd(env_.ctx, y, a_, ps[w2_].value, true);
}

void FfnLayer::backward(const Tensor& dh, const Tensor& dy, const Tensor& h, bool accumulate_dh) {
  ParamStore& ps = *store_;
  const size_t mark = scratch_->mark();
  const Grads g = alloc_grads(*scratch_);
  linear_bwd(env_.ctx, g.da, ps[w2_].grad, dy, a_, ps[w2_].value, false);
  swiglu_bwd(env_.ctx, g.dgu, g.da, gu_);
  linear_bwd(env_.ctx, dh, ps[w13_].grad, g.dgu, h, ps[w13_].value, accumulate_dh);
  scratch_->reset(mark);
}

}  // namespace tmt
