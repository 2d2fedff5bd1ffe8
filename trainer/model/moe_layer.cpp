#include "trainer/model/moe_layer.h"

#include <algorithm>
#include <cmath>

#include "kernels/grouped_linear.h"
#include "kernels/linear.h"
#include "kernels/router.h"
#include "kernels/swiglu.h"

namespace tmt {

MoeLayer::MoeLayer(const LayerEnv& env, int64_t layer, ParamStore& store)
    : env_(env), store_(&store) {
  const ModelConfig& m = env.recipe->model;
  const MoeConfig& e = *m.moe;
  experts_ = e.n_experts;
  top_k_ = e.top_k;
  hidden_ = e.expert_ffn_hidden;
  const std::string p = "layers." + std::to_string(layer) + ".moe.";
  const double out_std = m.init_std / std::sqrt(2.0 * static_cast<double>(m.n_layers));
  // The router is replicated on every rank of a stage (dense); the experts are sharded over EP.
  router_ = add_param(store, p + "router", {experts_, m.d_model}, ParamKind::kDense, true,
                      ParamInit::kNormal, m.init_std);
  w13_ = add_param(store, p + "w13", {experts_, 2 * hidden_, m.d_model}, ParamKind::kExpert, true,
                   ParamInit::kNormal, m.init_std);
  w2_ = add_param(store, p + "w2", {experts_, m.d_model, hidden_}, ParamKind::kExpert, true,
                  ParamInit::kNormal, out_std);
}

void MoeLayer::allocate(Arena& acts, Arena& scratch) {
  const int64_t t = env_.tokens();
  const int64_t d = env_.recipe->model.d_model;
  const int64_t rows = t * top_k_;  // dropless worst case: every assignment local
  const DType f = env_.dtype;
  logits_ = acts.alloc(f, {t, experts_});
  probs_ = acts.alloc(f, {t, experts_});
  topk_idx_ = acts.alloc(DType::kI32, {t, top_k_});
  topk_w_ = acts.alloc(f, {t, top_k_});
  lse_ = acts.alloc(f, {t});
  dprobs_ = acts.alloc(f, {t, experts_});
  dlse_ = acts.alloc(f, {t});
  xp_ = acts.alloc(f, {rows, d});
  gu_ = acts.alloc(f, {rows, 2 * hidden_});
  a_ = acts.alloc(f, {rows, hidden_});
  yp_ = acts.alloc(f, {rows, d});
  plan_.counts.reserve(static_cast<size_t>(experts_));
  plan_.src_token.reserve(static_cast<size_t>(rows));
  plan_.slot.reserve(static_cast<size_t>(rows));
  scratch_ = &scratch;
  const size_t mark = scratch.mark();
  alloc_grads(scratch);
  scratch.reset(mark);
}

MoeLayer::Grads MoeLayer::alloc_grads(Arena& scratch) const {
  const int64_t t = env_.tokens();
  const int64_t d = env_.recipe->model.d_model;
  const int64_t rows = t * top_k_;
  const DType f = env_.dtype;
  Grads g;
  g.dyp = scratch.alloc(f, {rows, d});
  g.da = scratch.alloc(f, {rows, hidden_});
  g.dgu = scratch.alloc(f, {rows, 2 * hidden_});
  g.dxp = scratch.alloc(f, {rows, d});
  g.dtopk_w = scratch.alloc(f, {t, top_k_});
  g.dlogits = scratch.alloc(f, {t, experts_});
  return g;
}

MoeStats MoeLayer::forward(const Tensor& y, const Tensor& h, double aux_weight) {
  const Context& ctx = env_.ctx;
  const ParamStore& ps = *store_;
  const MoeConfig& cfg = *env_.recipe->model.moe;
  const int64_t t = env_.tokens();
  linear_fwd(ctx, logits_, h, ps[router_].value, false);
  RouterParams rp;
  rp.top_k = top_k_;
  rp.score = cfg.score == "sigmoid" ? RouterScore::kSigmoid : RouterScore::kSoftmax;
  rp.renormalize = true;
  router_fwd(ctx, probs_, topk_idx_, topk_w_, lse_, logits_, rp);

  std::optional<int64_t> capacity;
  if (cfg.capacity_factor) {
    capacity = static_cast<int64_t>(std::ceil(
        *cfg.capacity_factor * static_cast<double>(t * top_k_) / static_cast<double>(experts_)));
  }
  make_dispatch_plan(plan_, topk_idx_, experts_, 0, experts_, capacity);
  rows_ = static_cast<int64_t>(plan_.src_token.size());

  MoeStats stats;
  stats.aux_loss =
      load_balancing_loss(ctx, dprobs_, probs_, topk_idx_, cfg.aux_loss_coeff, aux_weight);
  stats.z_loss = z_loss(ctx, dlse_, lse_, cfg.z_loss_coeff, aux_weight);
  int64_t busiest = 0;
  for (int64_t c : plan_.counts) busiest = std::max(busiest, c);
  stats.max_load = static_cast<double>(busiest) * static_cast<double>(experts_) /
                   static_cast<double>(t * top_k_);
  stats.dropped = t * top_k_ - rows_;

  const Tensor xp = xp_.slice(0, rows_), gu = gu_.slice(0, rows_), a = a_.slice(0, rows_),
               yp = yp_.slice(0, rows_);
  permute_fwd(ctx, xp, h, plan_);
  grouped_linear_fwd(ctx, gu, xp, ps[w13_].value, plan_.counts);
  swiglu_fwd(ctx, a, gu);
  grouped_linear_fwd(ctx, yp, a, ps[w2_].value, plan_.counts);
  unpermute_fwd(ctx, y, yp, topk_w_, plan_);
  return stats;
}

void MoeLayer::backward(const Tensor& dh, const Tensor& dy, const Tensor& h) {
  const Context& ctx = env_.ctx;
  ParamStore& ps = *store_;
  const MoeConfig& cfg = *env_.recipe->model.moe;
  const size_t mark = scratch_->mark();
  const Grads g = alloc_grads(*scratch_);
  const Tensor xp = xp_.slice(0, rows_), gu = gu_.slice(0, rows_), a = a_.slice(0, rows_),
               yp = yp_.slice(0, rows_);
  const Tensor dyp = g.dyp.slice(0, rows_), da = g.da.slice(0, rows_), dgu = g.dgu.slice(0, rows_),
               dxp = g.dxp.slice(0, rows_);
  unpermute_bwd(ctx, dyp, g.dtopk_w, dy, yp, topk_w_,
                plan_);  // dtopk_w accumulates onto the zeroed scratch
  grouped_linear_bwd(ctx, da, ps[w2_].grad, dyp, a, ps[w2_].value, plan_.counts);
  swiglu_bwd(ctx, dgu, da, gu);
  grouped_linear_bwd(ctx, dxp, ps[w13_].grad, dgu, xp, ps[w13_].value, plan_.counts);
  permute_bwd(ctx, dh, dxp, plan_);
  RouterParams rp;
  rp.top_k = top_k_;
  rp.score = cfg.score == "sigmoid" ? RouterScore::kSigmoid : RouterScore::kSoftmax;
  rp.renormalize = true;
  router_bwd(ctx, g.dlogits, g.dtopk_w, dprobs_, dlse_, probs_, topk_idx_, topk_w_, logits_, rp);
  linear_bwd(ctx, dh, ps[router_].grad, g.dlogits, h, ps[router_].value, true);
  scratch_->reset(mark);
}

}  // namespace tmt
