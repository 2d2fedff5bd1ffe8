#include "trainer/model/moe_layer.h"

#include <algorithm>
#include <cmath>

#include "kernels/cast.h"
#include "kernels/copy.h"
#include "kernels/grouped_linear.h"
#include "kernels/linear.h"
#include "kernels/router.h"
#include "kernels/swiglu.h"

namespace tmt {
namespace {

RouterParams router_params(const MoeConfig& cfg) {
  RouterParams rp;
  rp.top_k = cfg.top_k;
  rp.score = cfg.score;
  rp.renormalize = true;
  return rp;
}

}  // namespace

MoeLayer::MoeLayer(const LayerEnv& env, int64_t layer, ParamStore& store)
    : env_(env), store_(&store), exchange_(env.experts, env.etp, env.recipe->model.moe->n_experts) {
  const ModelConfig& m = env.recipe->model;
  const MoeConfig& e = *m.moe;
  experts_ = e.n_experts;
  top_k_ = e.top_k;
  hidden_ = e.expert_ffn_hidden / env.etp;
  const std::string p = "layers." + std::to_string(layer) + ".moe.";
  const double out_std = m.init_std / std::sqrt(2.0 * static_cast<double>(m.n_layers));
  const int64_t d = m.d_model, fe = e.expert_ffn_hidden, le = exchange_.local_experts();
  const int64_t first = exchange_.first_expert(), slice = exchange_.etp_rank() * hidden_;
  // The router is replicated (a dense parameter, on every TP rank); each rank holds its block of
  // the experts.
  router_ = add_param(store, p + "router", {experts_, d}, ParamKind::kDense, true,
                      ParamInit::kNormal, m.init_std, env.tp_size());
  w13_ = add_param_block(store, p + "w13", {experts_, 2, fe, d}, {first, 0, slice, 0},
                         {le, 2, hidden_, d}, ParamKind::kExpert, true, ParamInit::kNormal,
                         m.init_std);
  w2_ = add_param_block(store, p + "w2", {experts_, d, fe}, {first, 0, slice}, {le, d, hidden_},
                        ParamKind::kExpert, true, ParamInit::kNormal, out_std);
}

void MoeLayer::allocate(Arena& acts, Arena& scratch) {
  const int64_t t = env_.local_tokens();
  const int64_t d = env_.recipe->model.d_model;
  const int64_t sent = t * top_k_;  // dropless worst case
  const int64_t group = env_.experts != nullptr ? env_.experts->size() : 1;
  const int64_t received = group * sent;  // every rank's every assignment to this rank
  const DType f = env_.dtype, stat = env_.stat_dtype();
  logits_ = acts.alloc(f, {t, experts_});
  router_logits_ = f == stat ? logits_ : acts.alloc(stat, {t, experts_});
  probs_ = acts.alloc(stat, {t, experts_});
  topk_idx_ = acts.alloc(DType::kI32, {t, top_k_});
  topk_w_ = acts.alloc(stat, {t, top_k_});
  lse_ = acts.alloc(stat, {t});
  dprobs_ = acts.alloc(stat, {t, experts_});
  dlse_ = acts.alloc(stat, {t});
  stats_ = acts.alloc(DType::kF64, {2 * experts_ + 2});
  stats_host_.assign(static_cast<size_t>(2 * experts_ + 2), 0.0);
  xp_ = acts.alloc(f, {sent, d});
  yp_ = acts.alloc(f, {sent, d});
  yw_ = env_.etp > 1 ? acts.alloc(f, {env_.etp * sent, d}) : Tensor{};
  xr_ = acts.alloc(f, {received, d});
  xe_ = acts.alloc(f, {received, d});
  gu_ = acts.alloc(f, {received, 2 * hidden_});
  a_ = acts.alloc(f, {received, hidden_});
  ye_ = acts.alloc(f, {received, d});
  plan_.slot.reserve(static_cast<size_t>(sent));
  plan_.src_token.reserve(static_cast<size_t>(sent));
  scratch_ = &scratch;
  const size_t mark = scratch.mark();
  alloc_grads(scratch);
  scratch.reset(mark);
}

MoeLayer::Grads MoeLayer::alloc_grads(Arena& scratch) const {
  const int64_t t = env_.local_tokens();
  const int64_t d = env_.recipe->model.d_model;
  const int64_t group = env_.experts != nullptr ? env_.experts->size() : 1;
  const int64_t sent = t * top_k_, received = group * sent;
  const DType f = env_.dtype;
  Grads g;
  g.dyp = scratch.alloc(f, {sent, d});
  g.dyr = scratch.alloc(f, {received, d});
  g.dye = scratch.alloc(f, {received, d});
  g.da = scratch.alloc(f, {received, hidden_});
  g.dgu = scratch.alloc(f, {received, 2 * hidden_});
  g.dxe = scratch.alloc(f, {received, d});
  g.dxr = scratch.alloc(f, {received, d});
  g.dxp = scratch.alloc(f, {sent, d});
  g.dxw = env_.etp > 1 ? scratch.alloc(f, {env_.etp * sent, d}) : Tensor{};
  g.dtopk_w = scratch.alloc(env_.stat_dtype(), {t, top_k_});
  g.dlogits = scratch.alloc(env_.stat_dtype(), {t, experts_});
  g.dlogits_c = f == env_.stat_dtype() ? g.dlogits : scratch.alloc(f, {t, experts_});
  return g;
}

MoeStats MoeLayer::forward(const Tensor& y, const Tensor& h, double aux_weight) {
  const Context& ctx = env_.ctx;
  const ParamStore& ps = *store_;
  const MoeConfig& cfg = *env_.recipe->model.moe;
  const int64_t t = env_.local_tokens();
  const int64_t d = env_.recipe->model.d_model;
  linear_fwd(ctx, logits_, h, ps[router_].weight, false);
  if (router_logits_.data != logits_.data) cast(ctx, router_logits_, logits_);
  router_fwd(ctx, probs_, topk_idx_, topk_w_, lse_, router_logits_, router_params(cfg));
  const Tensor router_sums = stats_.slice(0, 2 * experts_ + 1);
  router_stats(ctx, router_sums, probs_, topk_idx_, lse_);

  std::optional<int64_t> capacity;
  if (cfg.capacity_factor) {
    capacity = static_cast<int64_t>(std::ceil(
        *cfg.capacity_factor * static_cast<double>(t * top_k_) / static_cast<double>(experts_)));
  }
  // The plan covers every expert: rows come out grouped by expert, so each EP rank's share is
  // contiguous.
  make_dispatch_plan(plan_, topk_idx_, experts_, 0, experts_, capacity);
  rows_ = plan_.rows();
  // The statistics on the host (stats_ may be on the device): the dropped count joins them, TP
  // sums them (the whole micro-batch's), and the router losses read the sums back on ctx.device.
  double* st = stats_host_.data();
  copy_to_host(ctx, st, router_sums);
  st[2 * experts_ + 1] = static_cast<double>(t * top_k_ - rows_);
  if (env_.tp_size() > 1) {
    env_.tp->all_reduce(Tensor{st, DType::kF64, Device::kCpu, Shape{2 * experts_ + 2}});
  }
  copy_from_host(ctx, stats_, st);
  exchange_.plan(plan_.counts);
  recv_ = exchange_.received_rows();

  MoeStats stats;
  const int64_t tokens = env_.tokens();
  stats.aux_loss = load_balancing_from_stats(ctx, dprobs_, router_sums, tokens, top_k_,
                                             cfg.aux_loss_coeff, aux_weight);
  stats.z_loss =
      z_loss_from_stats(ctx, dlse_, lse_, router_sums, tokens, cfg.z_loss_coeff, aux_weight);
  double busiest = 0;
  for (int64_t e = 0; e < experts_; ++e) busiest = std::max(busiest, st[e]);
  stats.max_load = busiest * static_cast<double>(experts_) / static_cast<double>(tokens * top_k_);
  stats.dropped = static_cast<int64_t>(st[2 * experts_ + 1]);

  const Tensor xp = xp_.slice(0, rows_), yp = yp_.slice(0, rows_);
  const Tensor yw = env_.etp > 1 ? yw_.slice(0, exchange_.returned_rows()) : Tensor{};
  const Tensor xr = xr_.slice(0, recv_), xe = xe_.slice(0, recv_), gu = gu_.slice(0, recv_),
               a = a_.slice(0, recv_), ye = ye_.slice(0, recv_);
  const int64_t le = exchange_.local_experts();
  permute_fwd(ctx, xp, h, plan_);
  exchange_.to_experts(ctx, xe, xr, xp);
  grouped_linear_fwd(ctx, gu, xe, ps[w13_].weight.view({le, 2 * hidden_, d}),
                     exchange_.local_counts());
  swiglu_fwd(ctx, a, gu);
  grouped_linear_fwd(ctx, ye, a, ps[w2_].weight, exchange_.local_counts());
  exchange_.from_experts(ctx, yp, yw, xr, ye);  // xr is free again: it carries the outputs back
  unpermute_fwd(ctx, y, yp, topk_w_, plan_);
  return stats;
}

void MoeLayer::backward(const Tensor& dh, const Tensor& dy, const Tensor& h) {
  const Context& ctx = env_.ctx;
  ParamStore& ps = *store_;
  const MoeConfig& cfg = *env_.recipe->model.moe;
  const int64_t d = env_.recipe->model.d_model;
  const size_t mark = scratch_->mark();
  const Grads g = alloc_grads(*scratch_);
  const Tensor yp = yp_.slice(0, rows_), xe = xe_.slice(0, recv_), gu = gu_.slice(0, recv_),
               a = a_.slice(0, recv_);
  const Tensor dyp = g.dyp.slice(0, rows_), dxp = g.dxp.slice(0, rows_);
  const Tensor dxw = env_.etp > 1 ? g.dxw.slice(0, exchange_.returned_rows()) : Tensor{};
  const Tensor dyr = g.dyr.slice(0, recv_), dye = g.dye.slice(0, recv_), da = g.da.slice(0, recv_),
               dgu = g.dgu.slice(0, recv_), dxe = g.dxe.slice(0, recv_),
               dxr = g.dxr.slice(0, recv_);
  const int64_t le = exchange_.local_experts();
  const Shape w13{le, 2 * hidden_, d};
  zero(ctx, g.dtopk_w);  // unpermute_bwd accumulates into it (scratch is not zeroed)
  unpermute_bwd(ctx, dyp, g.dtopk_w, dy, yp, topk_w_, plan_);
  exchange_.to_experts(ctx, dye, dyr, dyp);
  grouped_linear_bwd(ctx, da, ps[w2_].grad, dye, a, ps[w2_].weight, exchange_.local_counts());
  swiglu_bwd(ctx, dgu, da, gu);
  grouped_linear_bwd(ctx, dxe, ps[w13_].grad.view(w13), dgu, xe, ps[w13_].weight.view(w13),
                     exchange_.local_counts());
  exchange_.from_experts(ctx, dxp, dxw, dxr, dxe);
  permute_bwd(ctx, dh, dxp, plan_);
  router_bwd(ctx, g.dlogits, g.dtopk_w, dprobs_, dlse_, probs_, topk_idx_, topk_w_, router_logits_,
             router_params(cfg));
  if (g.dlogits_c.data != g.dlogits.data) cast(ctx, g.dlogits_c, g.dlogits);
  linear_bwd(ctx, dh, ps[router_].grad, g.dlogits_c, h, ps[router_].weight, true);
  scratch_->reset(mark);
}

}  // namespace tmt
