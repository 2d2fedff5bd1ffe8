#include "trainer/model/mla_layer.h"

#include <algorithm>
#include <cmath>

#include "kernels/attention.h"
#include "kernels/copy.h"
#include "kernels/linear.h"
#include "kernels/reduce.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/slice.h"
#include "trainer/model/gemm.h"

namespace tmt {

namespace {

// The latent norms' eps, whatever model.norm_eps says: transformers builds q_a_layernorm and
// kv_a_layernorm with RMSNorm's default (DeepseekV3RMSNorm(rank)), and DeepSeek's own code does
// the same.
constexpr double kLatentNormEps = 1e-6;

int64_t local_heads(const LayerEnv& env) { return env.model->n_heads / env.tp_size(); }

// Softmax scale 1 / sqrt(dn + dr), times YaRN's mscale(factor, mscale_all_dim)² when the recipe
// gives mscale_all_dim (transformers' DeepseekV3Attention / Mistral4Attention, yarn_get_mscale).
AttentionParams attention_params(const ModelConfig& m) {
  AttentionParams a;
  a.softmax_scale =
      1.0 / std::sqrt(static_cast<double>(m.mla->qk_nope_head_dim + m.mla->qk_rope_head_dim));
  const RopeScaling& rs = m.rope_scaling;
  const double all_dim = rs.mscale_all_dim.value_or(0.0);
  if (rs.type == RopeScalingType::kYarn && all_dim != 0.0 && rs.factor > 1.0) {
    const double g = 0.1 * all_dim * std::log(rs.factor) + 1.0;
    a.softmax_scale *= g * g;
  }
  a.window = m.sliding_window.value_or(0);
  return a;
}

}  // namespace

MlaLayer::MlaLayer(const LayerEnv& env, int64_t layer, ParamStore& store)
    : env_(env), store_(&store) {
  const ModelConfig& m = *env.model;
  const MlaConfig& a = *m.mla;
  const int64_t tp = env.tp_size(), r = env.tp_rank();
  heads_ = local_heads(env);
  rq_ = a.q_lora_rank;
  rkv_ = a.kv_lora_rank;
  dn_ = a.qk_nope_head_dim;
  dr_ = a.qk_rope_head_dim;
  dv_ = a.v_head_dim;
  const std::string p = "layers." + std::to_string(layer) + ".attn.";
  const int64_t d = m.d_model, h = m.n_heads;
  // The norms and down-projections: the whole tensor on every TP rank.
  const auto replicated_norm = [&](const std::string& name, int64_t size) {
    return store.add({.name = p + name,
                      .global_shape = {size},
                      .decay = false,
                      .init = ParamInit::kOnes,
                      .tp_replicas = tp});
  };
  const auto replicated_matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    return store.add({.name = p + name,
                      .global_shape = {rows, cols},
                      .init_std = m.init_std,
                      .tp_replicas = tp,
                      .gemm = true});
  };
  // The up-projections: this rank's heads' rows.
  const auto head_rows = [&](const std::string& name, int64_t per_head, int64_t cols) {
    return store.add({.name = p + name,
                      .global_shape = {h * per_head, cols},
                      .local_shape = {heads_ * per_head, cols},
                      .offset = {r * heads_ * per_head, 0},
                      .init_std = m.init_std,
                      .gemm = true});
  };
  norm_ = replicated_norm("norm", d);
  if (q_lora()) {
    wq_a_ = replicated_matrix("wq_a", rq_, d);
    q_a_norm_ = replicated_norm("q_a_norm", rq_);
    wq_ = head_rows("wq_b", dqk(), rq_);
  } else {
    wq_ = head_rows("wq", dqk(), d);
  }
  wkv_a_ = replicated_matrix("wkv_a", rkv_ + dr_, d);
  kv_a_norm_ = replicated_norm("kv_a_norm", rkv_);
  wkv_b_ = head_rows("wkv_b", dn_ + dv_, rkv_);
  wo_ = store.add({.name = p + "wo",
                   .global_shape = {d, h * dv_},
                   .local_shape = {d, heads_ * dv_},
                   .offset = {0, r * heads_ * dv_},
                   .init_std = env.out_init_std(),
                   .gemm = true});
}

void MlaLayer::allocate(Arena& acts, Arena& scratch) {
  const int64_t t = env_.tokens(), tl = env_.local_tokens();
  const DType f = env_.dtype, stat = env_.stat_dtype();
  if (!env_.selective()) kept_ = recomputed(acts);
  rstd_ = acts.alloc(stat, {tl});
  if (q_lora()) {
    qa_ = acts.alloc(f, {t, rq_});
    qa_rstd_ = acts.alloc(stat, {t});
  }
  q_ = acts.alloc(f, {t, heads_ * dqk()});
  ckv_ = acts.alloc(f, {t, rkv_});
  ckv_rstd_ = acts.alloc(stat, {t});
  k_ = acts.alloc(f, {t, heads_ * dqk()});
  v_ = acts.alloc(f, {t, heads_ * dv_});
  lse_ = acts.alloc(stat, {env_.batch, heads_, env_.seq});
  scratch_ = &scratch;
  const Tensor k4 = k_.view({env_.batch, env_.seq, heads_, dqk()});
  const Tensor v4 = v_.view({env_.batch, env_.seq, heads_, dv_});
  const size_t mark = scratch.mark();
  recomputed_for_pass();
  forward_temps(scratch);
  env_.cp.reserve_fwd(scratch, k4, v4);  // the attention core, under the forward's temporaries
  scratch.reset(mark);
  recomputed_for_pass();
  const size_t core = scratch.mark();
  env_.cp.reserve_fwd(scratch, k4, v4);  // selective: the core again
  scratch.reset(core);
  backward_temps(scratch, env_.residual_stand_in());
  env_.cp.reserve_bwd(scratch, k4, v4);
  scratch.reset(mark);
}

MlaLayer::Recomputed MlaLayer::recomputed(Arena& arena) const {
  const int64_t t = env_.tokens(), tl = env_.local_tokens(), d = env_.model->d_model;
  const DType f = env_.dtype;
  Recomputed r;
  r.h = arena.alloc(f, {tl, d});
  r.h_full = env_.sp.gathered(arena, r.h);
  if (q_lora()) r.qa_norm = arena.alloc(f, {t, rq_});
  r.ckv_norm = arena.alloc(f, {t, rkv_});
  r.o = arena.alloc(f, {t, heads_ * dv_});
  return r;
}

MlaLayer::Recomputed MlaLayer::recomputed_for_pass() const {
  return env_.selective() ? recomputed(*scratch_) : kept_;
}

MlaLayer::ForwardTemps MlaLayer::forward_temps(Arena& scratch) const {
  const int64_t t = env_.tokens(), d = env_.model->d_model;
  const DType f = env_.dtype;
  ForwardTemps g;
  g.q = scratch.alloc(f, {t, heads_ * dqk()});
  g.c = scratch.alloc(f, {t, rkv_ + dr_});
  g.kv = scratch.alloc(f, {t, heads_ * (dn_ + dv_)});
  g.pe = scratch.alloc(f, {t, dr_});
  g.partial = env_.sp.partial(scratch, f, d);
  g.received = env_.sp.received(scratch, f, d);
  return g;
}

MlaLayer::BackwardTemps MlaLayer::backward_temps(Arena& scratch, const Tensor& dx) const {
  const int64_t t = env_.tokens(), tl = env_.local_tokens(), d = env_.model->d_model;
  const DType f = env_.dtype;
  BackwardTemps g;
  g.dy_full = env_.sp.gathered(scratch, dx);
  g.dout = scratch.alloc(f, {t, heads_ * dv_});
  g.dq = scratch.alloc(f, {t, heads_ * dqk()});
  g.dq_proj = scratch.alloc(f, {t, heads_ * dqk()});
  g.dk = scratch.alloc(f, {t, heads_ * dqk()});
  g.dv = scratch.alloc(f, {t, heads_ * dv_});
  g.dpe = scratch.alloc(f, {t, dr_});
  g.dkv = scratch.alloc(f, {t, heads_ * (dn_ + dv_)});
  g.dckv_norm = scratch.alloc(f, {t, rkv_});
  g.dckv = scratch.alloc(f, {t, rkv_});
  g.dc = scratch.alloc(f, {t, rkv_ + dr_});
  if (q_lora()) {
    g.dqa_norm = scratch.alloc(f, {t, rq_});
    g.dqa = scratch.alloc(f, {t, rq_});
  }
  g.dh = scratch.alloc(f, {tl, d});
  g.dh_partial = env_.sp.partial(scratch, f, d);
  g.dx_norm = scratch.alloc(f, {tl, d});
  return g;
}

size_t MlaLayer::workspace_bytes(const LayerEnv& env) {
  const ModelConfig& m = *env.model;
  const MlaConfig& a = *m.mla;
  const int64_t heads = local_heads(env);
  const AttentionShape shape{
      env.batch,    env.seq,  heads, heads, a.qk_nope_head_dim + a.qk_rope_head_dim,
      a.v_head_dim, env.dtype};
  return env.cp.workspace_bytes(env.ctx.device, shape, attention_params(m));
}

void MlaLayer::reorder_heads(const Tensor& dst, const Tensor& src, bool to_rope_first) const {
  const Context& ctx = env_.ctx;
  const int64_t rows = src.size(0) * heads_;
  const Tensor d = dst.view({rows, dqk()}), s = src.view({rows, dqk()});
  // [nope | pe] -> [pe | nope], or back
  const int64_t pe_from = to_rope_first ? dn_ : 0, pe_to = to_rope_first ? 0 : dn_;
  const int64_t nope_from = to_rope_first ? 0 : dr_, nope_to = to_rope_first ? dr_ : 0;
  copy_columns(ctx, d, s, {.dst_col = pe_to, .src_col = pe_from, .width = dr_});
  copy_columns(ctx, d, s, {.dst_col = nope_to, .src_col = nope_from, .width = dn_});
}

void MlaLayer::forward(const Tensor& x_out, const Tensor& x, const Rope& rope) {
  const Context& ctx = env_.ctx;
  const ParamStore& ps = *store_;
  const int64_t t = env_.tokens(), th = t * heads_;
  const double eps = env_.model->norm_eps;
  const size_t mark = scratch_->mark();
  const Recomputed r = recomputed_for_pass();
  const ForwardTemps f = forward_temps(*scratch_);
  rmsnorm_fwd(ctx, r.h, rstd_, x, ps[norm_].weight, eps);
  env_.sp.gather(r.h_full, r.h);
  // queries, projected as [q_nope, q_pe] per head and held as [q_pe, q_nope]: one RoPE call then
  // rotates the pe part and applies the position scale to the whole head
  if (q_lora()) {
    gemm_fwd(env_, qa_, r.h_full, ps[wq_a_].weight);
    rmsnorm_fwd(ctx, r.qa_norm, qa_rstd_, qa_, ps[q_a_norm_].weight, kLatentNormEps);
    gemm_fwd(env_, f.q, r.qa_norm, ps[wq_].weight);
  } else {
    gemm_fwd(env_, f.q, r.h_full, ps[wq_].weight);
  }
  reorder_heads(q_, f.q, /*to_rope_first=*/true);
  const Shape qs{env_.batch, env_.seq, heads_, dqk()};
  const Tensor q3 = q_.view({t, heads_, dqk()});
  rope_fwd(ctx, q3, q3, rope.positions, rope.cos, rope.sin,
           {.layout = rope.layout, .scale = rope.q_scale});
  // the latent c = [c_kv, k_pe]: c_kv normed and up-projected to each head's [k_nope, v]; k_pe
  // rotated once, the one RoPE key of every head
  gemm_fwd(env_, f.c, r.h_full, ps[wkv_a_].weight);
  copy_columns(ctx, ckv_, f.c, {.dst_col = 0, .src_col = 0, .width = rkv_});
  rmsnorm_fwd(ctx, r.ckv_norm, ckv_rstd_, ckv_, ps[kv_a_norm_].weight, kLatentNormEps);
  gemm_fwd(env_, f.kv, r.ckv_norm, ps[wkv_b_].weight);
  copy_columns(ctx, f.pe, f.c, {.dst_col = 0, .src_col = rkv_, .width = dr_});
  const Tensor pe3 = f.pe.view({t, 1, dr_});
  rope_fwd(ctx, pe3, pe3, rope.positions, rope.cos, rope.sin, {.layout = rope.layout});
  // k = [k_pe broadcast to every head, k_nope] (the queries' order), v
  const Tensor kv_rows = f.kv.view({th, dn_ + dv_});
  const Tensor k_rows = k_.view({th, dqk()});
  copy_columns(ctx, k_rows, f.pe, {.dst_col = 0, .src_col = 0, .width = dr_}, heads_);
  copy_columns(ctx, k_rows, kv_rows, {.dst_col = dr_, .src_col = 0, .width = dn_});
  copy_columns(ctx, v_.view({th, dv_}), kv_rows, {.dst_col = 0, .src_col = dn_, .width = dv_});
  const Shape vs{env_.batch, env_.seq, heads_, dv_};
  env_.cp.attention_fwd(ctx, *scratch_, r.o.view(vs), lse_, q_.view(qs), k_.view(qs), v_.view(vs),
                        attention_params(*env_.model));
  copy(ctx, x_out, x);
  env_.sp.reduce_scatter_add(ctx, x_out, f.partial, f.received, [&](const Tensor& out, bool acc) {
    gemm_fwd(env_, out, r.o, ps[wo_].weight, acc);
  });
  scratch_->reset(mark);
}

void MlaLayer::backward(const Tensor& dx, const Tensor& x, const Rope& rope) {
  const Context& ctx = env_.ctx;
  ParamStore& ps = *store_;
  const int64_t t = env_.tokens(), th = t * heads_;
  const size_t mark = scratch_->mark();
  const Recomputed r = recomputed_for_pass();
  const Shape qs{env_.batch, env_.seq, heads_, dqk()};
  const Shape vs{env_.batch, env_.seq, heads_, dv_};
  if (env_.selective()) {  // the same operations on the same inputs: the same values
    rmsnorm_fwd(ctx, r.h, rstd_, x, ps[norm_].weight, env_.model->norm_eps);
    env_.sp.gather(r.h_full, r.h);
    if (q_lora()) rmsnorm_fwd(ctx, r.qa_norm, qa_rstd_, qa_, ps[q_a_norm_].weight, kLatentNormEps);
    rmsnorm_fwd(ctx, r.ckv_norm, ckv_rstd_, ckv_, ps[kv_a_norm_].weight, kLatentNormEps);
    env_.cp.attention_fwd(ctx, *scratch_, r.o.view(vs), lse_, q_.view(qs), k_.view(qs), v_.view(vs),
                          attention_params(*env_.model));
  }
  const BackwardTemps g = backward_temps(*scratch_, dx);
  env_.sp.gather(g.dy_full, dx);
  gemm_bwd(env_, g.dout, ps[wo_].grad, g.dy_full, r.o, ps[wo_].weight);
  env_.cp.attention_bwd(ctx, *scratch_, g.dq.view(qs), g.dk.view(qs), g.dv.view(vs),
                        g.dout.view(vs), q_.view(qs), k_.view(qs), v_.view(vs), r.o.view(vs), lse_,
                        attention_params(*env_.model));
  const Tensor dq3 = g.dq.view({t, heads_, dqk()});
  rope_bwd(ctx, dq3, dq3, rope.positions, rope.cos, rope.sin,
           {.layout = rope.layout, .scale = rope.q_scale});
  reorder_heads(g.dq_proj, g.dq, /*to_rope_first=*/false);
  // Everything from here to dh is this rank's heads' part, summed over TP at the end.
  // dc = [d c_kv, d k_pe]: the RoPE key's gradient is the sum over the heads that read it
  const Tensor dk_rows = g.dk.view({th, dqk()});
  sum_columns(ctx, g.dpe, dk_rows, {.dst_col = 0, .src_col = 0, .width = dr_}, heads_);
  const Tensor dpe3 = g.dpe.view({t, 1, dr_});
  rope_bwd(ctx, dpe3, dpe3, rope.positions, rope.cos, rope.sin, {.layout = rope.layout});
  copy_columns(ctx, g.dc, g.dpe, {.dst_col = rkv_, .src_col = 0, .width = dr_});
  const Tensor dkv_rows = g.dkv.view({th, dn_ + dv_});
  copy_columns(ctx, dkv_rows, dk_rows, {.dst_col = 0, .src_col = dr_, .width = dn_});
  copy_columns(ctx, dkv_rows, g.dv.view({th, dv_}), {.dst_col = dn_, .src_col = 0, .width = dv_});
  gemm_bwd(env_, g.dckv_norm, ps[wkv_b_].grad, g.dkv, r.ckv_norm, ps[wkv_b_].weight);
  rmsnorm_bwd(ctx, g.dckv, ps[kv_a_norm_].grad, g.dckv_norm, ckv_, ps[kv_a_norm_].weight,
              ckv_rstd_);
  copy_columns(ctx, g.dc, g.dckv, {.dst_col = 0, .src_col = 0, .width = rkv_});
  if (q_lora()) {
    gemm_bwd(env_, g.dqa_norm, ps[wq_].grad, g.dq_proj, r.qa_norm, ps[wq_].weight);
    rmsnorm_bwd(ctx, g.dqa, ps[q_a_norm_].grad, g.dqa_norm, qa_, ps[q_a_norm_].weight, qa_rstd_);
  }
  env_.sp.reduce_scatter(g.dh, g.dh_partial, [&](const Tensor& out) {
    if (q_lora()) {
      gemm_bwd(env_, out, ps[wq_a_].grad, g.dqa, r.h_full, ps[wq_a_].weight);
    } else {
      gemm_bwd(env_, out, ps[wq_].grad, g.dq_proj, r.h_full, ps[wq_].weight);
    }
    gemm_bwd(env_, out, ps[wkv_a_].grad, g.dc, r.h_full, ps[wkv_a_].weight,
             /*accumulate_dx=*/true);
  });
  rmsnorm_bwd(ctx, g.dx_norm, ps[norm_].grad, g.dh, x, ps[norm_].weight, rstd_);
  add(ctx, dx, g.dx_norm);
  scratch_->reset(mark);
}

}  // namespace tmt
