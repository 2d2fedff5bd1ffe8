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
  const int64_t tp = env.tp_size(), r = env.tp_rank();
  heads_ = m.n_heads / tp;
  head_dim_ = m.head_dim;
  // kv heads: split when tp divides them, else each rank holds the one its query heads read.
  const bool split_kv = m.n_kv_heads % tp == 0;
  kv_heads_ = split_kv ? m.n_kv_heads / tp : 1;
  const int64_t first_kv = split_kv ? r * kv_heads_ : r * heads_ / (m.n_heads / m.n_kv_heads);
  const int64_t kv_replicas = split_kv ? 1 : tp / m.n_kv_heads;
  const std::string p = "layers." + std::to_string(layer) + ".attn.";
  const int64_t d = m.d_model, dh = head_dim_;
  // Output projections start smaller so the residual stream's variance does not grow with depth.
  const double out_std = m.init_std / std::sqrt(2.0 * static_cast<double>(m.n_layers));
  norm_ = add_param(store, p + "norm", {d}, ParamKind::kDense, false, ParamInit::kOnes, 0.0, tp);
  wq_ = add_param_block(store, p + "wq", {m.n_heads * dh, d}, {r * heads_ * dh, 0},
                        {heads_ * dh, d}, ParamKind::kDense, true, ParamInit::kNormal, m.init_std);
  wk_ = add_param_block(store, p + "wk", {m.n_kv_heads * dh, d}, {first_kv * dh, 0},
                        {kv_heads_ * dh, d}, ParamKind::kDense, true, ParamInit::kNormal,
                        m.init_std, kv_replicas);
  wv_ = add_param_block(store, p + "wv", {m.n_kv_heads * dh, d}, {first_kv * dh, 0},
                        {kv_heads_ * dh, d}, ParamKind::kDense, true, ParamInit::kNormal,
                        m.init_std, kv_replicas);
  wo_ = add_param_block(store, p + "wo", {d, m.n_heads * dh}, {0, r * heads_ * dh},
                        {d, heads_ * dh}, ParamKind::kDense, true, ParamInit::kNormal, out_std);
}

void AttentionLayer::allocate(Arena& acts, Arena& scratch) {
  const int64_t t = env_.tokens(), tl = env_.local_tokens();
  const int64_t d = env_.recipe->model.d_model;
  const DType f = env_.dtype;
  h_ = acts.alloc(f, {tl, d});
  rstd_ = acts.alloc(env_.stat_dtype(), {tl});
  h_full_ = env_.tp_size() > 1 ? acts.alloc(f, {t, d}) : h_;
  q_ = acts.alloc(f, {t, heads_ * head_dim_});
  k_ = acts.alloc(f, {t, kv_heads_ * head_dim_});
  v_ = acts.alloc(f, {t, kv_heads_ * head_dim_});
  o_ = acts.alloc(f, {t, heads_ * head_dim_});
  lse_ = acts.alloc(env_.stat_dtype(), {env_.batch, heads_, env_.seq});
  scratch_ = &scratch;
  const size_t mark = scratch.mark();
  alloc_grads(scratch);
  scratch.reset(mark);
}

AttentionLayer::Grads AttentionLayer::alloc_grads(Arena& scratch) const {
  const int64_t t = env_.tokens(), tl = env_.local_tokens();
  const int64_t d = env_.recipe->model.d_model;
  const DType f = env_.dtype;
  const bool tp = env_.tp_size() > 1;
  Grads g;
  g.dh = scratch.alloc(f, {tl, d});
  g.dy_full = tp ? scratch.alloc(f, {t, d}) : Tensor{};
  g.dh_full = tp ? scratch.alloc(f, {t, d}) : g.dh;
  g.dq = scratch.alloc(f, {t, heads_ * head_dim_});
  g.dk = scratch.alloc(f, {t, kv_heads_ * head_dim_});
  g.dv = scratch.alloc(f, {t, kv_heads_ * head_dim_});
  g.dout = scratch.alloc(f, {t, heads_ * head_dim_});
  g.dx_norm = scratch.alloc(f, {tl, d});
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
  rmsnorm_fwd(ctx, h_, rstd_, x, ps[norm_].weight, env_.recipe->model.norm_eps);
  if (env_.tp_size() > 1) gather_sequence(env_, h_full_, h_);
  linear_fwd(ctx, q_, h_full_, ps[wq_].weight, false);
  linear_fwd(ctx, k_, h_full_, ps[wk_].weight, false);
  linear_fwd(ctx, v_, h_full_, ps[wv_].weight, false);
  const Tensor q3 = q_.view({t, heads_, head_dim_});
  const Tensor k3 = k_.view({t, kv_heads_, head_dim_});
  rope_fwd(ctx, q3, q3, positions, rope_cos, rope_sin);
  rope_fwd(ctx, k3, k3, positions, rope_cos, rope_sin);
  const Shape qs{env_.batch, env_.seq, heads_, head_dim_};
  const Shape ks{env_.batch, env_.seq, kv_heads_, head_dim_};
  attention_fwd(ctx, o_.view(qs), lse_, q_.view(qs), k_.view(ks), v_.view(ks),
                attention_params(env_.recipe->model));
  if (env_.tp_size() == 1) {
    copy(ctx, x_out, x);
    linear_fwd(ctx, x_out, o_, ps[wo_].weight, true);
    return;
  }
  const size_t mark = scratch_->mark();
  const Tensor partial = scratch_->alloc(env_.dtype, {t, env_.recipe->model.d_model});
  linear_fwd(ctx, partial, o_, ps[wo_].weight, false);
  scatter_sequence(env_, x_out, partial);
  add(ctx, x_out, x);
  scratch_->reset(mark);
}

void AttentionLayer::backward(const Tensor& dx, const Tensor& x, const Tensor& positions,
                              const Tensor& rope_cos, const Tensor& rope_sin) {
  const Context& ctx = env_.ctx;
  ParamStore& ps = *store_;
  const int64_t t = env_.tokens();
  const bool tp = env_.tp_size() > 1;
  const size_t mark = scratch_->mark();
  const Grads g = alloc_grads(*scratch_);
  // x_out = x + o Woᵀ: the branch sees dx unchanged (all of its tokens, under tp).
  if (tp) gather_sequence(env_, g.dy_full, dx);
  linear_bwd(ctx, g.dout, ps[wo_].grad, tp ? g.dy_full : dx, o_, ps[wo_].weight, false);
  const Shape qs{env_.batch, env_.seq, heads_, head_dim_};
  const Shape ks{env_.batch, env_.seq, kv_heads_, head_dim_};
  attention_bwd(ctx, g.dq.view(qs), g.dk.view(ks), g.dv.view(ks), g.dout.view(qs), q_.view(qs),
                k_.view(ks), v_.view(ks), o_.view(qs), lse_, attention_params(env_.recipe->model));
  const Tensor dq3 = g.dq.view({t, heads_, head_dim_});
  const Tensor dk3 = g.dk.view({t, kv_heads_, head_dim_});
  rope_bwd(ctx, dq3, dq3, positions, rope_cos, rope_sin);
  rope_bwd(ctx, dk3, dk3, positions, rope_cos, rope_sin);
  linear_bwd(ctx, g.dh_full, ps[wq_].grad, g.dq, h_full_, ps[wq_].weight, false);
  linear_bwd(ctx, g.dh_full, ps[wk_].grad, g.dk, h_full_, ps[wk_].weight, true);
  linear_bwd(ctx, g.dh_full, ps[wv_].grad, g.dv, h_full_, ps[wv_].weight, true);
  if (tp) scatter_sequence(env_, g.dh, g.dh_full);  // this rank's heads' share, summed over TP
  rmsnorm_bwd(ctx, g.dx_norm, ps[norm_].grad, g.dh, x, ps[norm_].weight, rstd_);
  add(ctx, dx, g.dx_norm);
  scratch_->reset(mark);
}

}  // namespace tmt
