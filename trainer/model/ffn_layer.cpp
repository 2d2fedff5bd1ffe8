#include "trainer/model/ffn_layer.h"

#include "kernels/linear.h"
#include "kernels/swiglu.h"
#include "trainer/model/gemm.h"

namespace tmt {

FfnLayer::FfnLayer(const LayerEnv& env, const std::string& prefix, int64_t hidden,
                   ParamStore& store)
    : env_(env), store_(&store), hidden_(hidden / env.tp_size()) {
  const int64_t first = env.tp_rank() * hidden_, d = env.model->d_model;
  w13_ = store.add({.name = prefix + "w13",
                    .global_shape = {2, hidden, d},
                    .local_shape = {2, hidden_, d},
                    .offset = {0, first, 0},
                    .init_std = env.model->init_std,
                    .gemm = true});
  w2_ = store.add({.name = prefix + "w2",
                   .global_shape = {d, hidden},
                   .local_shape = {d, hidden_},
                   .offset = {0, first},
                   .init_std = env.out_init_std(),
                   .gemm = true});
}

void FfnLayer::allocate(Arena& acts, Arena& scratch) {
  gate_up_ = acts.alloc(env_.dtype, {env_.tokens(), 2 * hidden_});
  if (!env_.selective()) act_ = acts.alloc(env_.dtype, {env_.tokens(), hidden_});
  scratch_ = &scratch;
  const size_t mark = scratch.mark();
  act_for_pass();  // forward's scratch is backward's without its temporaries
  backward_temps(scratch);
  scratch.reset(mark);
}

Tensor FfnLayer::act_for_pass() const {
  return env_.selective() ? scratch_->alloc(env_.dtype, {env_.tokens(), hidden_}) : act_;
}

FfnLayer::BackwardTemps FfnLayer::backward_temps(Arena& scratch) const {
  BackwardTemps g;
  g.dact = scratch.alloc(env_.dtype, {env_.tokens(), hidden_});
  g.dgate_up = scratch.alloc(env_.dtype, {env_.tokens(), 2 * hidden_});
  return g;
}

void FfnLayer::forward(const Tensor& y, const Tensor& h, bool accumulate) {
  const ParamStore& ps = *store_;
  const Tensor w13 = ps[w13_].weight.view({2 * hidden_, env_.model->d_model});
  const size_t mark = scratch_->mark();
  const Tensor act = act_for_pass();
  gemm_fwd(env_, gate_up_, h, w13);
  swiglu_fwd(env_.ctx, act, gate_up_);
  gemm_fwd(env_, y, act, ps[w2_].weight, accumulate);
  scratch_->reset(mark);
}

void FfnLayer::backward(const Tensor& dh, const Tensor& dy, const Tensor& h, bool accumulate_dh) {
  ParamStore& ps = *store_;
  const size_t mark = scratch_->mark();
  const Tensor act = act_for_pass();
  if (env_.selective()) swiglu_fwd(env_.ctx, act, gate_up_);
  const BackwardTemps g = backward_temps(*scratch_);
  gemm_bwd(env_, g.dact, ps[w2_].grad, dy, act, ps[w2_].weight);
  swiglu_bwd(env_.ctx, g.dgate_up, g.dact, gate_up_);
  const Shape w13{2 * hidden_, env_.model->d_model};
  gemm_bwd(env_, dh, ps[w13_].grad.view(w13), g.dgate_up, h, ps[w13_].weight.view(w13),
           accumulate_dh);
  scratch_->reset(mark);
}

}  // namespace tmt
