#include "trainer/model/attention_layer.h"

#include <cmath>

#include "kernels/attention.h"
#include "kernels/copy.h"
#include "kernels/linear.h"
#include "kernels/reduce.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"

namespace tmt {

AttentionLayer::AttentionLayer(const LayerEnv& env, int64_t layer, ParamStore& store)
    : env_(env), store_(&store) {
  const ModelConfig& m = env.recipe->model;
  heads_ = m.n_heads;
  kv_heads_ = m.n_kv_heads;
  head_dim_ = m.head_dim;
  const std::string p = "layers." + std::to_string(layer) + ".attn.";
  const int64_t d = m.d_model;
  // Output projections start smaller so the residual stream's variance does not grow with depth.
  const double out_std = m.init_std / std::sqrt(2.0 * static_cast<double>(m.n_layers));
  norm_ = add_param(store, p + "norm", {d}, ParamKind::kDense, false, ParamInit::kOnes, 0.0);
  wq_ = add_param(store, p + "wq", {heads_ * head_dim_, d}, ParamKind::kDense, true,
                  ParamInit::kNormal, m.init_std);
  wk_ = add_param(store, p + "wk", {kv_heads_ * head_dim_, d}, ParamKind::kDense, true,
                  ParamInit::kNormal, m.init_std);
  wv_ = add_param(store, p + "wv", {kv_heads_ * head_dim_, d}, ParamKind::kDense, true,
                  ParamInit::kNormal, m.init_std);
  wo_ = add_param(store, p + "wo", {d, heads_ * head_dim_}, ParamKind::kDense, true,
                  ParamInit::kNormal, out_std);
}

void AttentionLayer::allocate(Arena& acts, Arena& scratch) {
  const int64_t t = env_.tokens();
  const DType f = env_.dtype;
  h_ = acts.alloc(f, {t, env_.recipe->model.d_model});
  rstd_ = acts.alloc(f, {t});
  q_ = acts.alloc(f, {t, heads_ * head_dim_});
  k_ = acts.alloc(f, {t, kv_heads_ * head_dim_});
  v_ = acts.alloc(f, {t, kv_heads_ * head_dim_});
  o_ = acts.alloc(f, {t, heads_ * head_dim_});
  lse_ = acts.alloc(f, {env_.batch, heads_, env_.seq});
  scratch_ = &scratch;
  const size_t mark = scratch.mark();
  alloc_grads(scratch);
  scratch.reset(mark);
}

AttentionLayer::Grads AttentionLayer::alloc_grads(Arena& scratch) const {
  const int64_t t = env_.tokens();
  const DType f = env_.dtype;
  Grads g;
  g.dh = scratch.alloc(f, {t, env_.recipe->model.d_model});
  g.dq = scratch.alloc(f, {t, heads_ * head_dim_});
  g.dk = scratch.alloc(f, {t, kv_heads_ * head_dim_});
  g.dv = scratch.alloc(f, {t, kv_heads_ * head_dim_});
  g.dout = scratch.alloc(f, {t, heads_ * head_dim_});
  g.dx_norm = scratch.alloc(f, {t, env_.recipe->model.d_model});
  return g;
}

namespace {

AttentionParams attention_params(const ModelConfig& m) {
  AttentionParams a;
  a.softmax_scale = 1.0 / std::sqrt(static_cast<double>(m.head_dim));
  a.window = m.sliding_window.value_or(0);
  return a;
}

}  // namespace

void AttentionLayer::forward(const Tensor& x_out, const Tensor& x, const Tensor& positions,
                             const Tensor& rope_cos, const Tensor& rope_sin) {
  const Context& ctx = env_.ctx;
  const ParamStore& ps = *store_;
  const int64_t t = env_.tokens();
  rmsnorm_fwd(ctx, h_, rstd_, x, ps[norm_].value, env_.recipe->model.norm_eps);
  linear_fwd(ctx, q_, h_, ps[wq_].value, false);
  linear_fwd(ctx, k_, h_, ps[wk_].value, false);
  linear_fwd(ctx, v_, h_, ps[wv_].value, false);
  const Tensor q3 = q_.view({t, heads_, head_dim_});
  const Tensor k3 = k_.view({t, kv_heads_, head_dim_});
  rope_fwd(ctx, q3, q3, positions, rope_cos, rope_sin);
  rope_fwd(ctx, k3, k3, positions, rope_cos, rope_sin);
  const Shape qs{env_.batch, env_.seq, heads_, head_dim_};
  const Shape ks{env_.batch, env_.seq, kv_heads_, head_dim_};
  attention_fwd(ctx, o_.view(qs), lse_, q_.view(qs), k_.view(ks), v_.view(ks),
                attention_params(env_.recipe->model));
  copy(ctx, x_out, x);
  linear_fwd(ctx, x_out, o_, ps[wo_].value, true);
}

void AttentionLayer::backward(const Tensor& dx, const Tensor& x, const Tensor& positions,
                              const Tensor& rope_cos, const Tensor& rope_sin) {
  const Context& ctx = env_.ctx;
  ParamStore& ps = *store_;
  const int64_t t = env_.tokens();
  const size_t mark = scratch_->mark();
  const Grads g = alloc_grads(*scratch_);
  // x_out = x + o Woᵀ: the branch sees dx unchanged.
  linear_bwd(ctx, g.dout, ps[wo_].grad, dx, o_, ps[wo_].value, false);
  const Shape qs{env_.batch, env_.seq, heads_, head_dim_};
  const Shape ks{env_.batch, env_.seq, kv_heads_, head_dim_};
  attention_bwd(ctx, g.dq.view(qs), g.dk.view(ks), g.dv.view(ks), g.dout.view(qs), q_.view(qs),
                k_.view(ks), v_.view(ks), o_.view(qs), lse_, attention_params(env_.recipe->model));
  const Tensor dq3 = g.dq.view({t, heads_, head_dim_});
  const Tensor dk3 = g.dk.view({t, kv_heads_, head_dim_});
  rope_bwd(ctx, dq3, dq3, positions, rope_cos, rope_sin);
  rope_bwd(ctx, dk3, dk3, positions, rope_cos, rope_sin);
  linear_bwd(ctx, g.dh, ps[wq_].grad, g.dq, h_, ps[wq_].value, false);
  linear_bwd(ctx, g.dh, ps[wk_].grad, g.dk, h_, ps[wk_].value, true);
  linear_bwd(ctx, g.dh, ps[wv_].grad, g.dv, h_, ps[wv_].value, true);
  rmsnorm_bwd(ctx, g.dx_norm, ps[norm_].grad, g.dh, x, ps[norm_].value, rstd_);
  add(ctx, dx, g.dx_norm);
  scratch_->reset(mark);
}

}  // namespace tmt
