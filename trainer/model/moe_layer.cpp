#include "trainer/model/moe_layer.h"

#include <algorithm>
#include <cmath>

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
  rp.score = cfg.score == "sigmoid" ? RouterScore::kSigmoid : RouterScore::kSoftmax;
  rp.renormalize = true;
  return rp;
}

}  // namespace

MoeLayer::MoeLayer(const LayerEnv& env, int64_t layer, ParamStore& store)
    : env_(env), store_(&store) {
  const ModelConfig& m = env.recipe->model;
  const MoeConfig& e = *m.moe;
  experts_ = e.n_experts;
  top_k_ = e.top_k;
  hidden_ = e.expert_ffn_hidden;
  TMT_CHECK(experts_ % env.ep_size() == 0, "{} experts over {} expert-parallel ranks", experts_,
            env.ep_size());
  local_experts_ = experts_ / env.ep_size();
  expert_begin_ = env.ep_rank() * local_experts_;
  const std::string p = "layers." + std::to_string(layer) + ".moe.";
  const double out_std = m.init_std / std::sqrt(2.0 * static_cast<double>(m.n_layers));
  // The router is replicated (a dense parameter); each EP rank holds its block of the experts.
  router_ = add_param(store, p + "router", {experts_, m.d_model}, ParamKind::kDense, true,
                      ParamInit::kNormal, m.init_std);
  w13_ = add_param_rows(store, p + "w13", {experts_, 2 * hidden_, m.d_model}, expert_begin_,
                        local_experts_, ParamKind::kExpert, true, ParamInit::kNormal, m.init_std);
  w2_ = add_param_rows(store, p + "w2", {experts_, m.d_model, hidden_}, expert_begin_,
                       local_experts_, ParamKind::kExpert, true, ParamInit::kNormal, out_std);
}

void MoeLayer::allocate(Arena& acts, Arena& scratch) {
  const int64_t t = env_.tokens();
  const int64_t d = env_.recipe->model.d_model;
  const int64_t sent = t * top_k_;                 // dropless worst case
  const int64_t received = env_.ep_size() * sent;  // every rank's every assignment to this rank
  const DType f = env_.dtype;
  logits_ = acts.alloc(f, {t, experts_});
  probs_ = acts.alloc(f, {t, experts_});
  topk_idx_ = acts.alloc(DType::kI32, {t, top_k_});
  topk_w_ = acts.alloc(f, {t, top_k_});
  lse_ = acts.alloc(f, {t});
  dprobs_ = acts.alloc(f, {t, experts_});
  dlse_ = acts.alloc(f, {t});
  xp_ = acts.alloc(f, {sent, d});
  yp_ = acts.alloc(f, {sent, d});
  xr_ = acts.alloc(f, {received, d});
  xe_ = acts.alloc(f, {received, d});
  gu_ = acts.alloc(f, {received, 2 * hidden_});
  a_ = acts.alloc(f, {received, hidden_});
  ye_ = acts.alloc(f, {received, d});
  plan_.slot.reserve(static_cast<size_t>(sent));
  plan_.src_token.reserve(static_cast<size_t>(sent));
  reorder_.slot.reserve(static_cast<size_t>(received));
  reorder_.src_token.reserve(static_cast<size_t>(received));
  scratch_ = &scratch;
  const size_t mark = scratch.mark();
  alloc_grads(scratch);
  scratch.reset(mark);
}

MoeLayer::Grads MoeLayer::alloc_grads(Arena& scratch) const {
  const int64_t t = env_.tokens();
  const int64_t d = env_.recipe->model.d_model;
  const int64_t sent = t * top_k_, received = env_.ep_size() * sent;
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
  g.dtopk_w = scratch.alloc(f, {t, top_k_});
  g.dlogits = scratch.alloc(f, {t, experts_});
  return g;
}

// After routing: how many rows go to each EP rank and come from each, and the expert-major order
// of what arrives (for local expert e: the rows from rank 0, then rank 1, ...).
void MoeLayer::exchange_counts() {
  const int64_t ep = env_.ep_size();
  send_rows_.assign(static_cast<size_t>(ep), 0);
  std::vector<int64_t> sent_counts(
      plan_.counts);  // [ep · local_experts]: per destination, per expert
  for (int64_t e = 0; e < experts_; ++e)
    send_rows_[static_cast<size_t>(e / local_experts_)] += plan_.counts[static_cast<size_t>(e)];
  std::vector<int64_t> got(static_cast<size_t>(ep * local_experts_),
                           0);  // per source, per local expert
  if (env_.ep != nullptr && ep > 1) {
    Tensor out{got.data(), DType::kI64, Device::kCpu, Shape{ep * local_experts_}};
    Tensor in{sent_counts.data(), DType::kI64, Device::kCpu, Shape{experts_}};
    const std::vector<int64_t> each(static_cast<size_t>(ep), local_experts_);
    env_.ep->all_to_all_v(out, each, in, each);
  } else {
    got = sent_counts;
  }
  recv_rows_.assign(static_cast<size_t>(ep), 0);
  local_counts_.assign(static_cast<size_t>(local_experts_), 0);
  for (int64_t src = 0; src < ep; ++src) {
    for (int64_t e = 0; e < local_experts_; ++e) {
      const int64_t c = got[static_cast<size_t>(src * local_experts_ + e)];
      recv_rows_[static_cast<size_t>(src)] += c;
      local_counts_[static_cast<size_t>(e)] += c;
    }
  }
  recv_ = 0;
  for (int64_t r : recv_rows_) recv_ += r;
  // reorder_.src_token[i]: the received row that becomes expert-major row i; slot is its inverse.
  std::vector<int64_t> src_offset(static_cast<size_t>(ep), 0);
  for (int64_t src = 1; src < ep; ++src) {
    src_offset[static_cast<size_t>(src)] =
        src_offset[static_cast<size_t>(src - 1)] + recv_rows_[static_cast<size_t>(src - 1)];
  }
  reorder_.src_token.clear();
  reorder_.slot.assign(static_cast<size_t>(recv_), -1);
  for (int64_t e = 0; e < local_experts_; ++e) {
    for (int64_t src = 0; src < ep; ++src) {
      int64_t row = src_offset[static_cast<size_t>(src)];
      for (int64_t e2 = 0; e2 < e; ++e2) row += got[static_cast<size_t>(src * local_experts_ + e2)];
      for (int64_t i = 0; i < got[static_cast<size_t>(src * local_experts_ + e)]; ++i) {
        reorder_.slot[static_cast<size_t>(row + i)] =
            static_cast<int32_t>(reorder_.src_token.size());
        reorder_.src_token.push_back(static_cast<int32_t>(row + i));
      }
    }
  }
  reorder_.counts = local_counts_;
}

// sent (this rank's rows, plan order) -> received (at the experts, source order) -> expert-major.
void MoeLayer::to_experts(const Tensor& expert_major, const Tensor& received, const Tensor& sent) {
  if (env_.ep != nullptr && env_.ep_size() > 1) {
    env_.ep->all_to_all_v(received, recv_rows_, sent, send_rows_);
  } else {
    copy(env_.ctx, received, sent);
  }
  permute_fwd(env_.ctx, expert_major, received, reorder_);
}

// expert-major -> received order -> back to the ranks that sent them (plan order).
void MoeLayer::from_experts(const Tensor& sent, const Tensor& received,
                            const Tensor& expert_major) {
  permute_bwd(env_.ctx, received, expert_major, reorder_);
  if (env_.ep != nullptr && env_.ep_size() > 1) {
    env_.ep->all_to_all_v(sent, send_rows_, received, recv_rows_);
  } else {
    copy(env_.ctx, sent, received);
  }
}

MoeStats MoeLayer::forward(const Tensor& y, const Tensor& h, double aux_weight) {
  const Context& ctx = env_.ctx;
  const ParamStore& ps = *store_;
  const MoeConfig& cfg = *env_.recipe->model.moe;
  const int64_t t = env_.tokens();
  linear_fwd(ctx, logits_, h, ps[router_].value, false);
  router_fwd(ctx, probs_, topk_idx_, topk_w_, lse_, logits_, router_params(cfg));

  std::optional<int64_t> capacity;
  if (cfg.capacity_factor) {
    capacity = static_cast<int64_t>(std::ceil(
        *cfg.capacity_factor * static_cast<double>(t * top_k_) / static_cast<double>(experts_)));
  }
  // The plan covers every expert: rows come out grouped by expert, so each EP rank's share is
  // contiguous.
  make_dispatch_plan(plan_, topk_idx_, experts_, 0, experts_, capacity);
  rows_ = plan_.rows();
  exchange_counts();

  MoeStats stats;
  stats.aux_loss =
      load_balancing_loss(ctx, dprobs_, probs_, topk_idx_, cfg.aux_loss_coeff, aux_weight);
  stats.z_loss = z_loss(ctx, dlse_, lse_, cfg.z_loss_coeff, aux_weight);
  int64_t busiest = 0;
  for (int64_t c : plan_.counts) busiest = std::max(busiest, c);
  stats.max_load = static_cast<double>(busiest) * static_cast<double>(experts_) /
                   static_cast<double>(t * top_k_);
  stats.dropped = t * top_k_ - rows_;

  const Tensor xp = xp_.slice(0, rows_), yp = yp_.slice(0, rows_);
  const Tensor xr = xr_.slice(0, recv_), xe = xe_.slice(0, recv_), gu = gu_.slice(0, recv_),
               a = a_.slice(0, recv_), ye = ye_.slice(0, recv_);
  permute_fwd(ctx, xp, h, plan_);
  to_experts(xe, xr, xp);
  grouped_linear_fwd(ctx, gu, xe, ps[w13_].value, local_counts_);
  swiglu_fwd(ctx, a, gu);
  grouped_linear_fwd(ctx, ye, a, ps[w2_].value, local_counts_);
  from_experts(yp, xr, ye);  // xr is free again: it carries the outputs back
  unpermute_fwd(ctx, y, yp, topk_w_, plan_);
  return stats;
}

void MoeLayer::backward(const Tensor& dh, const Tensor& dy, const Tensor& h) {
  const Context& ctx = env_.ctx;
  ParamStore& ps = *store_;
  const MoeConfig& cfg = *env_.recipe->model.moe;
  const size_t mark = scratch_->mark();
  const Grads g = alloc_grads(*scratch_);
  const Tensor yp = yp_.slice(0, rows_), xe = xe_.slice(0, recv_), gu = gu_.slice(0, recv_),
               a = a_.slice(0, recv_);
  const Tensor dyp = g.dyp.slice(0, rows_), dxp = g.dxp.slice(0, rows_);
  const Tensor dyr = g.dyr.slice(0, recv_), dye = g.dye.slice(0, recv_), da = g.da.slice(0, recv_),
               dgu = g.dgu.slice(0, recv_), dxe = g.dxe.slice(0, recv_),
               dxr = g.dxr.slice(0, recv_);
  unpermute_bwd(ctx, dyp, g.dtopk_w, dy, yp, topk_w_,
                plan_);  // dtopk_w accumulates onto zeroed scratch
  to_experts(dye, dyr, dyp);
  grouped_linear_bwd(ctx, da, ps[w2_].grad, dye, a, ps[w2_].value, local_counts_);
  swiglu_bwd(ctx, dgu, da, gu);
  grouped_linear_bwd(ctx, dxe, ps[w13_].grad, dgu, xe, ps[w13_].value, local_counts_);
  from_experts(dxp, dxr, dxe);
  permute_bwd(ctx, dh, dxp, plan_);
  router_bwd(ctx, g.dlogits, g.dtopk_w, dprobs_, dlse_, probs_, topk_idx_, topk_w_, logits_,
             router_params(cfg));
  linear_bwd(ctx, dh, ps[router_].grad, g.dlogits, h, ps[router_].value, true);
  scratch_->reset(mark);
}

}  // namespace tmt
