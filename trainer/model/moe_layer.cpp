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
  return {.top_k = cfg.top_k, .score = cfg.score, .renormalize = true};
}

}  // namespace

MoeLayer::MoeLayer(const LayerEnv& env, int64_t layer, ParamStore& store)
    : env_(env), store_(&store), exchange_(env.experts, env.etp, env.model->moe->n_experts) {
  const ModelConfig& m = *env.model;
  const MoeConfig& e = *m.moe;
  experts_ = e.n_experts;
  top_k_ = e.top_k;
  hidden_ = e.expert_ffn_hidden / env.etp;
  const std::string p = "layers." + std::to_string(layer) + ".moe.";
  const int64_t d = m.d_model, fe = e.expert_ffn_hidden, le = exchange_.local_experts();
  const int64_t first = exchange_.first_expert(), slice = exchange_.etp_rank() * hidden_;
  // The router is replicated (a dense parameter, on every TP rank); each rank holds its block of
  // the experts.
  router_ = store.add({.name = p + "router",
                       .global_shape = {experts_, d},
                       .init_std = m.init_std,
                       .tp_replicas = env.tp_size()});
  w13_ = store.add({.name = p + "w13",
                    .global_shape = {experts_, 2, fe, d},
                    .local_shape = {le, 2, hidden_, d},
                    .offset = {first, 0, slice, 0},
                    .kind = ParamKind::kExpert,
                    .init_std = m.init_std});
  w2_ = store.add({.name = p + "w2",
                   .global_shape = {experts_, d, fe},
                   .local_shape = {le, d, hidden_},
                   .offset = {first, 0, slice},
                   .kind = ParamKind::kExpert,
                   .init_std = env.out_init_std()});
}

void MoeLayer::allocate(Arena& acts, Arena& scratch) {
  const int64_t t = env_.local_tokens();
  const int64_t d = env_.model->d_model;
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
  x_sent_ = acts.alloc(f, {sent, d});
  y_returned_ = acts.alloc(f, {sent, d});
  y_partials_ = env_.etp > 1 ? acts.alloc(f, {env_.etp * sent, d}) : Tensor{};
  x_received_ = acts.alloc(f, {received, d});
  x_experts_ = acts.alloc(f, {received, d});
  gate_up_ = acts.alloc(f, {received, 2 * hidden_});
  act_ = acts.alloc(f, {received, hidden_});
  y_experts_ = acts.alloc(f, {received, d});
  plan_.slot.reserve(static_cast<size_t>(sent));
  plan_.src_token.reserve(static_cast<size_t>(sent));
  scratch_ = &scratch;
  const size_t mark = scratch.mark();
  backward_temps(scratch);
  scratch.reset(mark);
}

MoeLayer::BackwardTemps MoeLayer::backward_temps(Arena& scratch) const {
  const int64_t t = env_.local_tokens();
  const int64_t d = env_.model->d_model;
  const int64_t group = env_.experts != nullptr ? env_.experts->size() : 1;
  const int64_t sent = t * top_k_, received = group * sent;
  const DType f = env_.dtype;
  BackwardTemps g;
  g.dy_returned = scratch.alloc(f, {sent, d});
  g.dy_received = scratch.alloc(f, {received, d});
  g.dy_experts = scratch.alloc(f, {received, d});
  g.dact = scratch.alloc(f, {received, hidden_});
  g.dgate_up = scratch.alloc(f, {received, 2 * hidden_});
  g.dx_experts = scratch.alloc(f, {received, d});
  g.dx_received = scratch.alloc(f, {received, d});
  g.dx_sent = scratch.alloc(f, {sent, d});
  g.dx_partials = env_.etp > 1 ? scratch.alloc(f, {env_.etp * sent, d}) : Tensor{};
  g.dtopk_w = scratch.alloc(env_.stat_dtype(), {t, top_k_});
  g.dlogits = scratch.alloc(env_.stat_dtype(), {t, experts_});
  g.dlogits_c = f == env_.stat_dtype() ? g.dlogits : scratch.alloc(f, {t, experts_});
  return g;
}

MoeStats MoeLayer::forward(const Tensor& y, const Tensor& h, double aux_weight) {
  const Context& ctx = env_.ctx;
  const ParamStore& ps = *store_;
  const MoeConfig& cfg = *env_.model->moe;
  const int64_t t = env_.local_tokens();
  const int64_t d = env_.model->d_model;
  linear_fwd(ctx, logits_, h, ps[router_].weight);
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
  env_.sp.sum(Tensor{st, DType::kF64, Device::kCpu, Shape{2 * experts_ + 2}});
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

  const Tensor x_sent = x_sent_.slice(0, rows_), y_returned = y_returned_.slice(0, rows_);
  const Tensor y_partials =
      env_.etp > 1 ? y_partials_.slice(0, exchange_.returned_rows()) : Tensor{};
  const Tensor x_received = x_received_.slice(0, recv_), x_experts = x_experts_.slice(0, recv_),
               gate_up = gate_up_.slice(0, recv_), act = act_.slice(0, recv_),
               y_experts = y_experts_.slice(0, recv_);
  const int64_t le = exchange_.local_experts();
  permute_fwd(ctx, x_sent, h, plan_);
  exchange_.to_experts(ctx, x_experts, x_received, x_sent);
  grouped_linear_fwd(ctx, gate_up, x_experts, ps[w13_].weight.view({le, 2 * hidden_, d}),
                     exchange_.local_counts());
  swiglu_fwd(ctx, act, gate_up);
  grouped_linear_fwd(ctx, y_experts, act, ps[w2_].weight, exchange_.local_counts());
  // x_received is free again: it carries the outputs back.
  exchange_.from_experts(ctx, y_returned, y_partials, x_received, y_experts);
  unpermute_fwd(ctx, y, y_returned, topk_w_, plan_);
  return stats;
}

void MoeLayer::backward(const Tensor& dh, const Tensor& dy, const Tensor& h) {
  const Context& ctx = env_.ctx;
  ParamStore& ps = *store_;
  const MoeConfig& cfg = *env_.model->moe;
  const int64_t d = env_.model->d_model;
  const size_t mark = scratch_->mark();
  const BackwardTemps g = backward_temps(*scratch_);
  const Tensor y_returned = y_returned_.slice(0, rows_), x_experts = x_experts_.slice(0, recv_),
               gate_up = gate_up_.slice(0, recv_), act = act_.slice(0, recv_);
  const Tensor dy_returned = g.dy_returned.slice(0, rows_), dx_sent = g.dx_sent.slice(0, rows_);
  const Tensor dx_partials =
      env_.etp > 1 ? g.dx_partials.slice(0, exchange_.returned_rows()) : Tensor{};
  const Tensor dy_received = g.dy_received.slice(0, recv_),
               dy_experts = g.dy_experts.slice(0, recv_), dact = g.dact.slice(0, recv_),
               dgate_up = g.dgate_up.slice(0, recv_), dx_experts = g.dx_experts.slice(0, recv_),
               dx_received = g.dx_received.slice(0, recv_);
  const int64_t le = exchange_.local_experts();
  const Shape w13{le, 2 * hidden_, d};
  zero(ctx, g.dtopk_w);  // unpermute_bwd accumulates into it (scratch is not zeroed)
  unpermute_bwd(ctx, dy_returned, g.dtopk_w, dy, y_returned, topk_w_, plan_);
  exchange_.to_experts(ctx, dy_experts, dy_received, dy_returned);
  grouped_linear_bwd(ctx, dact, ps[w2_].grad, dy_experts, act, ps[w2_].weight,
                     exchange_.local_counts());
  swiglu_bwd(ctx, dgate_up, dact, gate_up);
  grouped_linear_bwd(ctx, dx_experts, ps[w13_].grad.view(w13), dgate_up, x_experts,
                     ps[w13_].weight.view(w13), exchange_.local_counts());
  exchange_.from_experts(ctx, dx_sent, dx_partials, dx_received, dx_experts);
  permute_bwd(ctx, dh, dx_sent, plan_);
  router_bwd(ctx, g.dlogits, g.dtopk_w, dprobs_, dlse_, probs_, topk_idx_, topk_w_, router_logits_,
             router_params(cfg));
  if (g.dlogits_c.data != g.dlogits.data) cast(ctx, g.dlogits_c, g.dlogits);
  linear_bwd(ctx, dh, ps[router_].grad, g.dlogits_c, h, ps[router_].weight,
             /*accumulate_dx=*/true);
  scratch_->reset(mark);
}

}  // namespace tmt
