#include "trainer/model/attention_layer.h"

#include <algorithm>
#include <cmath>

#include "kernels/attention.h"
#include "kernels/copy.h"
#include "kernels/linear.h"
#include "kernels/reduce.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "trainer/model/gemm.h"

namespace tmt {

namespace {

// This rank's query heads (H/tp) and kv heads: Hk/tp when tp divides them, else the one its query
// heads read.
int64_t local_heads(const LayerEnv& env) { return env.model->n_heads / env.tp_size(); }
int64_t local_kv_heads(const LayerEnv& env) {
  const int64_t tp = env.tp_size(), hk = env.model->n_kv_heads;
  return hk % tp == 0 ? hk / tp : 1;
}

AttentionParams attention_params(const ModelConfig& m) {
  AttentionParams a;
  a.softmax_scale = 1.0 / std::sqrt(static_cast<double>(m.head_dim));
  a.window = m.sliding_window.value_or(0);
  return a;
}

}  // namespace

AttentionLayer::AttentionLayer(const LayerEnv& env, int64_t layer, ParamStore& store)
    : env_(env), store_(&store) {
  const ModelConfig& m = *env.model;
  const int64_t tp = env.tp_size(), r = env.tp_rank();
  heads_ = local_heads(env);
  head_dim_ = m.head_dim;
  // kv heads: split when tp divides them, else each rank holds the one its query heads read.
  const bool split_kv = m.n_kv_heads % tp == 0;
  kv_heads_ = local_kv_heads(env);
  const int64_t first_kv = split_kv ? r * kv_heads_ : r * heads_ / (m.n_heads / m.n_kv_heads);
  const int64_t kv_replicas = split_kv ? 1 : tp / m.n_kv_heads;
  const std::string p = "layers." + std::to_string(layer) + ".attn.";
  const int64_t d = m.d_model, dh = head_dim_;
  norm_ = store.add({.name = p + "norm",
                     .global_shape = {d},
                     .decay = false,
                     .init = ParamInit::kOnes,
                     .tp_replicas = tp});
  wq_ = store.add({.name = p + "wq",
                   .global_shape = {m.n_heads * dh, d},
                   .local_shape = {heads_ * dh, d},
                   .offset = {r * heads_ * dh, 0},
                   .init_std = m.init_std,
                   .gemm = true});
  for (auto [index, name] : {std::pair{&wk_, "wk"}, std::pair{&wv_, "wv"}}) {
    *index = store.add({.name = p + name,
                        .global_shape = {m.n_kv_heads * dh, d},
                        .local_shape = {kv_heads_ * dh, d},
                        .offset = {first_kv * dh, 0},
                        .init_std = m.init_std,
                        .tp_replicas = kv_replicas,
                        .gemm = true});
  }
  wo_ = store.add({.name = p + "wo",
                   .global_shape = {d, m.n_heads * dh},
                   .local_shape = {d, heads_ * dh},
                   .offset = {0, r * heads_ * dh},
                   .init_std = env.out_init_std(),
                   .gemm = true});
}

void AttentionLayer::allocate(Arena& acts, Arena& scratch) {
  const int64_t t = env_.tokens(), tl = env_.local_tokens();
  const DType f = env_.dtype;
  if (!env_.selective()) kept_ = recomputed(acts);
  rstd_ = acts.alloc(env_.stat_dtype(), {tl});
  q_ = acts.alloc(f, {t, heads_ * head_dim_});
  k_ = acts.alloc(f, {t, kv_heads_ * head_dim_});
  v_ = acts.alloc(f, {t, kv_heads_ * head_dim_});
  lse_ = acts.alloc(env_.stat_dtype(), {env_.batch, heads_, env_.seq});
  scratch_ = &scratch;
  const Tensor k4 = k_.view({env_.batch, env_.seq, kv_heads_, head_dim_});
  const Tensor v4 = v_.view({env_.batch, env_.seq, kv_heads_, head_dim_});
  const size_t mark = scratch.mark();
  recomputed_for_pass();
  const size_t core = scratch.mark();  // the attention core's, then the output projection's
  env_.cp.reserve_fwd(scratch, k4, v4);
  scratch.reset(core);
  forward_temps(scratch);
  scratch.reset(mark);
  recomputed_for_pass();
  env_.cp.reserve_fwd(scratch, k4, v4);  // selective: the core again
  scratch.reset(core);
  backward_temps(scratch, env_.residual_stand_in());
  env_.cp.reserve_bwd(scratch, k4, v4);
  scratch.reset(mark);
}

AttentionLayer::Recomputed AttentionLayer::recomputed(Arena& arena) const {
  const int64_t t = env_.tokens(), tl = env_.local_tokens(), d = env_.model->d_model;
  Recomputed r;
  r.h = arena.alloc(env_.dtype, {tl, d});
  r.h_full = env_.sp.gathered(arena, r.h);
  r.o = arena.alloc(env_.dtype, {t, heads_ * head_dim_});
  return r;
}

AttentionLayer::Recomputed AttentionLayer::recomputed_for_pass() const {
  return env_.selective() ? recomputed(*scratch_) : kept_;
}

AttentionLayer::ForwardTemps AttentionLayer::forward_temps(Arena& scratch) const {
  const int64_t d = env_.model->d_model;
  return {env_.sp.partial(scratch, env_.dtype, d), env_.sp.received(scratch, env_.dtype, d)};
}

AttentionLayer::BackwardTemps AttentionLayer::backward_temps(Arena& scratch,
                                                             const Tensor& dx) const {
  const int64_t t = env_.tokens(), tl = env_.local_tokens();
  const int64_t d = env_.model->d_model;
  const DType f = env_.dtype;
  BackwardTemps g;
  g.dh = scratch.alloc(f, {tl, d});
  g.dy_full = env_.sp.gathered(scratch, dx);
  g.dh_partial = env_.sp.partial(scratch, f, d);
  g.dq = scratch.alloc(f, {t, heads_ * head_dim_});
  g.dk = scratch.alloc(f, {t, kv_heads_ * head_dim_});
  g.dv = scratch.alloc(f, {t, kv_heads_ * head_dim_});
  g.dout = scratch.alloc(f, {t, heads_ * head_dim_});
  g.dx_norm = scratch.alloc(f, {tl, d});
  return g;
}

size_t AttentionLayer::workspace_bytes(const LayerEnv& env) {
  const ModelConfig& m = *env.model;
  const AttentionShape shape{env.batch,  env.seq,    local_heads(env), local_kv_heads(env),
                             m.head_dim, m.head_dim, env.dtype};
  return env.cp.workspace_bytes(env.ctx.device, shape, attention_params(m));
}

void AttentionLayer::forward(const Tensor& x_out, const Tensor& x, const Rope& rope) {
  const Context& ctx = env_.ctx;
  const ParamStore& ps = *store_;
  const int64_t t = env_.tokens();
  const size_t mark = scratch_->mark();
  const Recomputed r = recomputed_for_pass();
  rmsnorm_fwd(ctx, r.h, rstd_, x, ps[norm_].weight, env_.model->norm_eps);
  env_.sp.gather(r.h_full, r.h);
  gemm_fwd(env_, q_, r.h_full, ps[wq_].weight);
  gemm_fwd(env_, k_, r.h_full, ps[wk_].weight);
  gemm_fwd(env_, v_, r.h_full, ps[wv_].weight);
  const Tensor q3 = q_.view({t, heads_, head_dim_});
  const Tensor k3 = k_.view({t, kv_heads_, head_dim_});
  rope_fwd(ctx, q3, q3, rope.positions, rope.cos, rope.sin,
           {.layout = rope.layout, .scale = rope.q_scale});
  rope_fwd(ctx, k3, k3, rope.positions, rope.cos, rope.sin, {.layout = rope.layout});
  const Shape qs{env_.batch, env_.seq, heads_, head_dim_};
  const Shape ks{env_.batch, env_.seq, kv_heads_, head_dim_};
  env_.cp.attention_fwd(ctx, *scratch_, r.o.view(qs), lse_, q_.view(qs), k_.view(ks), v_.view(ks),
                        attention_params(*env_.model));
  const ForwardTemps f = forward_temps(*scratch_);
  copy(ctx, x_out, x);
  env_.sp.reduce_scatter_add(ctx, x_out, f.partial, f.received, [&](const Tensor& out, bool acc) {
    gemm_fwd(env_, out, r.o, ps[wo_].weight, acc);
  });
  scratch_->reset(mark);
}

void AttentionLayer::backward(const Tensor& dx, const Tensor& x, const Rope& rope) {
  const Context& ctx = env_.ctx;
  ParamStore& ps = *store_;
  const int64_t t = env_.tokens();
  const size_t mark = scratch_->mark();
  const Recomputed r = recomputed_for_pass();
  const Shape qs{env_.batch, env_.seq, heads_, head_dim_};
  const Shape ks{env_.batch, env_.seq, kv_heads_, head_dim_};
  if (env_.selective()) {  // the same operations on the same inputs: the same values
    rmsnorm_fwd(ctx, r.h, rstd_, x, ps[norm_].weight, env_.model->norm_eps);
    env_.sp.gather(r.h_full, r.h);
    env_.cp.attention_fwd(ctx, *scratch_, r.o.view(qs), lse_, q_.view(qs), k_.view(ks), v_.view(ks),
                          attention_params(*env_.model));
  }
  const BackwardTemps g = backward_temps(*scratch_, dx);
  // x_out = x + o Woᵀ: the branch sees dx unchanged (all of its tokens, under tp).
  env_.sp.gather(g.dy_full, dx);
  gemm_bwd(env_, g.dout, ps[wo_].grad, g.dy_full, r.o, ps[wo_].weight);
  env_.cp.attention_bwd(ctx, *scratch_, g.dq.view(qs), g.dk.view(ks), g.dv.view(ks),
                        g.dout.view(qs), q_.view(qs), k_.view(ks), v_.view(ks), r.o.view(qs), lse_,
                        attention_params(*env_.model));
  const Tensor dq3 = g.dq.view({t, heads_, head_dim_});
  const Tensor dk3 = g.dk.view({t, kv_heads_, head_dim_});
  rope_bwd(ctx, dq3, dq3, rope.positions, rope.cos, rope.sin,
           {.layout = rope.layout, .scale = rope.q_scale});
  rope_bwd(ctx, dk3, dk3, rope.positions, rope.cos, rope.sin, {.layout = rope.layout});
  // dh: this rank's heads' share of the projections' input gradient, summed over TP.
  env_.sp.reduce_scatter(g.dh, g.dh_partial, [&](const Tensor& out) {
    gemm_bwd(env_, out, ps[wq_].grad, g.dq, r.h_full, ps[wq_].weight);
    gemm_bwd(env_, out, ps[wk_].grad, g.dk, r.h_full, ps[wk_].weight, /*accumulate_dx=*/true);
    gemm_bwd(env_, out, ps[wv_].grad, g.dv, r.h_full, ps[wv_].weight, /*accumulate_dx=*/true);
  });
  rmsnorm_bwd(ctx, g.dx_norm, ps[norm_].grad, g.dh, x, ps[norm_].weight, rstd_);
  add(ctx, dx, g.dx_norm);
  scratch_->reset(mark);
}

}  // namespace tmt
