#include "trainer/model/ffn_layer.h"

#include <cmath>

#include "kernels/linear.h"
#include "kernels/swiglu.h"

namespace tmt {

FfnLayer::FfnLayer(const LayerEnv& env, const std::string& prefix, int64_t hidden,
                   ParamStore& store)
    : env_(env), store_(&store), hidden_(hidden / env.tp_size()) {
  const ModelConfig& m = env.recipe->model;
  const double out_std = m.init_std / std::sqrt(2.0 * static_cast<double>(m.n_layers));
  const int64_t first = env.tp_rank() * hidden_, d = m.d_model;
  w13_ = add_param_block(store, prefix + "w13", {2, hidden, d}, {0, first, 0}, {2, hidden_, d},
                         ParamKind::kDense, true, ParamInit::kNormal, m.init_std);
  w2_ = add_param_block(store, prefix + "w2", {d, hidden}, {0, first}, {d, hidden_},
                        ParamKind::kDense, true, ParamInit::kNormal, out_std);
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

void FfnLayer::forward(const Tensor& y, const Tensor& h, bool accumulate) {
  const ParamStore& ps = *store_;
  const Tensor w13 = ps[w13_].weight.view({2 * hidden_, env_.recipe->model.d_model});
  linear_fwd(env_.ctx, gu_, h, w13, false);
  swiglu_fwd(env_.ctx, a_, gu_);
  linear_fwd(env_.ctx, y, a_, ps[w2_].weight, accumulate);
}

void FfnLayer::backward(const Tensor& dh, const Tensor& dy, const Tensor& h, bool accumulate_dh) {
  ParamStore& ps = *store_;
  const size_t mark = scratch_->mark();
  const Grads g = alloc_grads(*scratch_);
  linear_bwd(env_.ctx, g.da, ps[w2_].grad, dy, a_, ps[w2_].weight, false);
  swiglu_bwd(env_.ctx, g.dgu, g.da, gu_);
  const Shape w13{2 * hidden_, env_.recipe->model.d_model};
  linear_bwd(env_.ctx, dh, ps[w13_].grad.view(w13), g.dgu, h, ps[w13_].weight.view(w13),
             accumulate_dh);
  scratch_->reset(mark);
}

}  // namespace tmt
