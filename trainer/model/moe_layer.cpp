#include "trainer/model/moe_layer.h"

#include <algorithm>
#include <cmath>

#include "kernels/cast.h"
#include "kernels/copy.h"
#include "kernels/grouped_linear.h"
#include "kernels/linear.h"
#include "kernels/router.h"
#include "kernels/swiglu.h"
#include "trainer/model/gemm.h"

namespace tmt {
namespace {

RouterParams router_params(const MoeConfig& cfg) {
  return {.top_k = cfg.top_k,
          .score = cfg.score,
          .renormalize = true,
          .n_groups = cfg.n_groups,
          .topk_groups = cfg.topk_groups,
          .scaling = cfg.routed_scaling_factor};
}

}  // namespace

MoeLayer::MoeLayer(const LayerEnv& env, int64_t layer, ParamStore& store)
    : env_(env),
      store_(&store),
      layer_(layer),
      exchange_(env.experts, env.etp, env.model->moe->n_experts) {
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
                    .init_std = m.init_std,
                    .gemm = true});
  w2_ = store.add({.name = p + "w2",
                   .global_shape = {experts_, d, fe},
                   .local_shape = {le, d, hidden_},
                   .offset = {first, 0, slice},
                   .kind = ParamKind::kExpert,
                   .init_std = env.out_init_std(),
                   .gemm = true});
  // The expert bias steers the choice only: a buffer (no gradient), replicated like the router and
  // kept equal on every rank by the trainer's update (update_expert_bias).
  if (e.expert_bias()) {
    bias_ = store.add({.name = p + "expert_bias",
                       .global_shape = {experts_},
                       .decay = false,
                       .init = ParamInit::kZeros,
                       .tp_replicas = env.tp_size(),
                       .trainable = false});
  }
}

void MoeLayer::allocate(Arena& acts, Arena& scratch) {
  const int64_t t = env_.local_tokens();
  const int64_t d = env_.model->d_model;
  const DType f = env_.dtype, stat = env_.stat_dtype();
  // The router GEMM writes its logits in f32 even in bf16: rounding them first would bias
  // near-ties toward the lower expert before the fp32 routing.
  router_logits_ = acts.alloc(stat, {t, experts_});
  probs_ = acts.alloc(stat, {t, experts_});
  topk_idx_ = acts.alloc(DType::kI32, {t, top_k_});
  topk_w_ = acts.alloc(stat, {t, top_k_});
  lse_ = acts.alloc(stat, {t});
  dprobs_ = acts.alloc(stat, {t, experts_});
  dlse_ = acts.alloc(stat, {t});
  stats_ = acts.alloc(DType::kF64, {2 * experts_ + 2});
  stats_host_.assign(static_cast<size_t>(2 * experts_ + 2), 0.0);
  if (env_.model->moe->seq_aux_loss_coeff > 0) {
    seq_stats_ = acts.alloc(DType::kF64, {env_.batch, 2 * experts_});
    seq_stats_host_.assign(static_cast<size_t>(env_.batch * 2 * experts_), 0.0);
  }
  y_returned_ = acts.alloc(f, {t * top_k_, d});           // at most every assignment is kept
  if (!acts.is_counting() && !Arena::DryRun::active()) {  // host memory: not for a sizing pass
    plan_.slot.reserve(static_cast<size_t>(t * top_k_));
    plan_.src_token.reserve(static_cast<size_t>(t * top_k_));
  }
  scratch_ = &scratch;
  const size_t mark = scratch.mark();
  forward_temps(scratch);
  scratch.reset(mark);
  backward_temps(scratch);
  scratch.reset(mark);
}

void MoeLayer::bind(ExpertRows& rows, int64_t slot) {
  rows_mem_ = &rows;
  slot_ = slot;
}

int64_t MoeLayer::planned_received() const {
  const int64_t sent = env_.local_tokens() * top_k_;
  const int64_t ranks = env_.experts != nullptr ? env_.experts->size() : 1;
  const int64_t worst = ranks * sent;  // every assignment of the group, to this rank
  if (const auto& c = env_.model->moe->capacity_factor) {
    // Each of the group's ranks sends each local expert at most its capacity.
    const auto capacity = static_cast<int64_t>(
        std::ceil(*c * static_cast<double>(sent) / static_cast<double>(experts_)));
    return std::min(worst, ranks * exchange_.local_experts() * capacity);
  }
  return std::min(worst, env_.etp * sent);
}

template <class Memory>
MoeLayer::KeptRows MoeLayer::kept_rows(Memory& memory, int64_t rows) const {
  const DType f = env_.dtype;
  KeptRows k;
  k.x_experts = memory.alloc(f, {rows, env_.model->d_model});
  k.gate_up = memory.alloc(f, {rows, 2 * hidden_});
  if (!env_.selective()) k.act = memory.alloc(f, {rows, hidden_});
  return k;
}

template <class Memory>
MoeLayer::ReceivedForward MoeLayer::received_forward(Memory& memory, int64_t rows) const {
  const int64_t d = env_.model->d_model;
  ReceivedForward r;
  r.x_received = memory.alloc(env_.dtype, {rows, d});
  r.y_experts = memory.alloc(env_.dtype, {rows, d});
  if (env_.selective()) r.act = memory.alloc(env_.dtype, {rows, hidden_});
  if (packed_dispatch())
    r.x_packed = memory.alloc(DType::kF8E4M3, {rows, fp8_row_bytes(d, *env_.fp8)});
  return r;
}

template <class Memory>
MoeLayer::ReceivedBackward MoeLayer::received_backward(Memory& memory, int64_t rows) const {
  const int64_t d = env_.model->d_model;
  const DType f = env_.dtype;
  ReceivedBackward g;
  g.dy_received = memory.alloc(f, {rows, d});
  g.dy_experts = memory.alloc(f, {rows, d});
  g.dact = memory.alloc(f, {rows, hidden_});
  g.dgate_up = memory.alloc(f, {rows, 2 * hidden_});
  g.dx_experts = memory.alloc(f, {rows, d});
  g.dx_received = memory.alloc(f, {rows, d});
  if (env_.selective()) g.act = memory.alloc(f, {rows, hidden_});
  return g;
}

size_t MoeLayer::kept_bytes(int64_t rows) const {
  Arena count = Arena::counting(env_.ctx.device);
  kept_rows(count, rows);
  return count.peak();
}

size_t MoeLayer::scratch_bytes(int64_t rows) const {
  Arena forward = Arena::counting(env_.ctx.device), backward = Arena::counting(env_.ctx.device);
  received_forward(forward, rows);
  received_backward(backward, rows);
  return std::max(forward.peak(), backward.peak());
}

MoeLayer::ForwardTemps MoeLayer::forward_temps(Arena& scratch) const {
  const int64_t sent = env_.local_tokens() * top_k_, d = env_.model->d_model;
  ForwardTemps f;
  f.x_sent = scratch.alloc(env_.dtype, {sent, d});
  if (env_.etp > 1) f.y_partials = scratch.alloc(env_.dtype, {env_.etp * sent, d});
  if (packed_dispatch())
    f.x_packed = scratch.alloc(DType::kF8E4M3, {sent, fp8_row_bytes(d, *env_.fp8)});
  return f;
}

MoeLayer::BackwardTemps MoeLayer::backward_temps(Arena& scratch) const {
  const int64_t t = env_.local_tokens();
  const int64_t d = env_.model->d_model;
  const int64_t sent = t * top_k_;
  const DType f = env_.dtype;
  BackwardTemps g;
  g.dy_returned = scratch.alloc(f, {sent, d});
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
  linear_fwd(ctx, router_logits_, h, ps[router_].weight);
  const Tensor bias = bias_ ? ps[*bias_].value : Tensor{};
  router_fwd(ctx, probs_, topk_idx_, topk_w_, lse_, router_logits_, bias, router_params(cfg));
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
  // (and CP over the sequences' other chunks)
  env_.sp.sum(Tensor{st, DType::kF64, Device::kCpu, Shape{2 * experts_ + 2}});
  env_.cp.sum(Tensor{st, DType::kF64, Device::kCpu, Shape{2 * experts_ + 2}});
  copy_from_host(ctx, stats_, st);
  exchange_.plan(plan_.counts);
  recv_ = exchange_.received_rows();

  MoeStats stats;
  const int64_t tokens = env_.tokens() * env_.cp.size();  // the whole sequences'

  // The loss values from the host copy of the sums: nothing more is read back from the device.
  stats.aux_loss = load_balancing_from_stats(ctx, dprobs_, router_sums, tokens, top_k_,
                                             cfg.aux_loss_coeff, aux_weight, st);
  stats.z_loss =
      z_loss_from_stats(ctx, dlse_, lse_, router_sums, tokens, cfg.z_loss_coeff, aux_weight, st);
  if (seq_stats_.defined()) {
    // Per whole sequence: this rank's rows are tokens [rank · T/tp, (rank + 1) · T/tp) of the
    // micro-batch; the per-sequence sums over TP (and CP) cover every token of each sequence.
    // Under context parallelism the rows number each sequence's 2·C tokens here (env_.seq), and
    // the loss normalises by the whole sequence's S.
    const int64_t first = env_.tp_rank() * t;
    seq_aux_stats(ctx, seq_stats_, probs_, topk_idx_, first, env_.seq);
    double* sq = seq_stats_host_.data();
    copy_to_host(ctx, sq, seq_stats_);
    env_.sp.sum(Tensor{sq, DType::kF64, Device::kCpu, seq_stats_.shape});
    env_.cp.sum(Tensor{sq, DType::kF64, Device::kCpu, seq_stats_.shape});
    copy_from_host(ctx, seq_stats_, sq);
    stats.aux_loss +=
        seq_aux_from_stats(ctx, dprobs_, probs_, seq_stats_, first, env_.seq, env_.cp.seq(), top_k_,
                           cfg.seq_aux_loss_coeff, aux_weight, sq);
  }
  stats.load.assign(st, st + experts_);
  double busiest = 0;
  for (int64_t e = 0; e < experts_; ++e) busiest = std::max(busiest, st[e]);
  stats.max_load = busiest * static_cast<double>(experts_) / static_cast<double>(tokens * top_k_);
  stats.dropped = static_cast<int64_t>(st[2 * experts_ + 1]);

  // The expert side: the kept rows from this micro-batch's stack, the rest from scratch.
  kept_ = kept_rows(rows_mem_->kept(slot_), recv_);
  GrowingStack& rows_scratch = rows_mem_->scratch();
  rows_scratch.reset();
  const ReceivedForward r = received_forward(rows_scratch, recv_);
  const size_t mark = scratch_->mark();
  const ForwardTemps tmp = forward_temps(*scratch_);
  const Tensor x_sent = tmp.x_sent.slice(0, rows_), y_returned = y_returned_.slice(0, rows_);
  const Tensor y_partials =
      env_.etp > 1 ? tmp.y_partials.slice(0, exchange_.returned_rows()) : Tensor{};
  const int64_t le = exchange_.local_experts();
  permute_fwd(ctx, x_sent, h, plan_);
  if (fp8_dispatch()) {
    // The rows cross in FP8 and the first GEMM takes them as its quantized input.
    const Tensor packed_sent = packed_dispatch() ? tmp.x_packed.slice(0, rows_) : Tensor{};
    exchange_.to_experts_fp8(ctx, kept_.x_experts, r.x_received, x_sent, r.x_packed, packed_sent,
                             *env_.fp8);
  } else {
    exchange_.to_experts(ctx, kept_.x_experts, r.x_received, x_sent);
  }
  grouped_gemm_fwd(env_, kept_.gate_up, kept_.x_experts, ps[w13_].weight.view({le, 2 * hidden_, d}),
                   exchange_.local_counts(), /*x_quantized=*/fp8_dispatch());
  const Tensor act = env_.selective() ? r.act : kept_.act;
  swiglu_fwd(ctx, act, kept_.gate_up);
  grouped_gemm_fwd(env_, r.y_experts, act, ps[w2_].weight, exchange_.local_counts());
  // x_received is free again: it carries the outputs back.
  exchange_.from_experts(ctx, y_returned, y_partials, r.x_received, r.y_experts);
  unpermute_fwd(ctx, y, y_returned, topk_w_, plan_);
  scratch_->reset(mark);
  return stats;
}

void MoeLayer::backward(const Tensor& dh, const Tensor& dy, const Tensor& h) {
  const Context& ctx = env_.ctx;
  ParamStore& ps = *store_;
  const MoeConfig& cfg = *env_.model->moe;
  const int64_t d = env_.model->d_model;
  const size_t mark = scratch_->mark();
  const BackwardTemps g = backward_temps(*scratch_);
  GrowingStack& rows_scratch = rows_mem_->scratch();
  rows_scratch.reset();
  const ReceivedBackward r = received_backward(rows_scratch, recv_);
  const Tensor y_returned = y_returned_.slice(0, rows_);
  const Tensor dy_returned = g.dy_returned.slice(0, rows_), dx_sent = g.dx_sent.slice(0, rows_);
  const Tensor dx_partials =
      env_.etp > 1 ? g.dx_partials.slice(0, exchange_.returned_rows()) : Tensor{};
  const int64_t le = exchange_.local_experts();
  const Shape w13{le, 2 * hidden_, d};
  zero(ctx, g.dtopk_w);  // unpermute_bwd accumulates into it (scratch is not zeroed)
  unpermute_bwd(ctx, dy_returned, g.dtopk_w, dy, y_returned, topk_w_, plan_);
  exchange_.to_experts(ctx, r.dy_experts, r.dy_received, dy_returned);
  const Tensor act = env_.selective() ? r.act : kept_.act;
  if (env_.selective()) swiglu_fwd(ctx, act, kept_.gate_up);  // the same values as forward's
  grouped_gemm_bwd(env_, r.dact, ps[w2_].grad, r.dy_experts, act, ps[w2_].weight,
                   exchange_.local_counts());
  swiglu_bwd(ctx, r.dgate_up, r.dact, kept_.gate_up);
  grouped_gemm_bwd(env_, r.dx_experts, ps[w13_].grad.view(w13), r.dgate_up, kept_.x_experts,
                   ps[w13_].weight.view(w13), exchange_.local_counts());
  exchange_.from_experts(ctx, dx_sent, dx_partials, r.dx_received, r.dx_experts);
  permute_bwd(ctx, dh, dx_sent, plan_);
  router_bwd(ctx, g.dlogits, g.dtopk_w, dprobs_, dlse_, probs_, topk_idx_, topk_w_, router_logits_,
             router_params(cfg));
  if (g.dlogits_c.data != g.dlogits.data) cast(ctx, g.dlogits_c, g.dlogits);
  linear_bwd(ctx, dh, ps[router_].grad, g.dlogits_c, h, ps[router_].weight,
             /*accumulate_dx=*/true);
  scratch_->reset(mark);
}

}  // namespace tmt
