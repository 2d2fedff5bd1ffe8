#include "trainer/plan/step_estimate.h"

#include <algorithm>

#include "kernels/fp8.h"
#include "parallel/topology.h"
#include "trainer/model/model_stats.h"
#include "trainer/pipeline/stages.h"

namespace tmt {
namespace {

// Whether every rank of rank 0's group of `kind` lies in the NVLink domain of rank 0 (ranks
// [0, domain)); the groups of other ranks are the same shape.
bool inside_domain(const Layout& l, GroupKind kind, int domain) {
  for (const int64_t r : group_ranks(l, 0, kind)) {
    if (r >= domain) return false;
  }
  return true;
}

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

double ring_share(int64_t n) { return static_cast<double>(n - 1) / static_cast<double>(n); }

// train.recompute's FLOPs per token over the whole model (step_estimate.h).
double recompute_flops_per_token(const ModelConfig& m, const ModelStats& stats, Recompute mode) {
  if (mode == Recompute::kNone) return 0;
  const double d = static_cast<double>(m.d_model);
  if (mode == Recompute::kFull)
    return (stats.flops_per_token() - 6.0 * static_cast<double>(m.vocab_size) * d) / 3.0;
  double elementwise = 0;
  for (int64_t l = 0; l < m.n_layers; ++l) {
    double hidden = static_cast<double>(m.ffn_hidden);
    if (m.moe && m.is_moe_layer(l)) {
      hidden = static_cast<double>(m.moe->top_k * m.moe->expert_ffn_hidden +
                                   m.moe->n_shared_experts * m.moe->shared_expert_ffn_hidden);
    }
    elementwise += 2 * 4 * d + 4 * hidden;
  }
  return stats.attention_flops_per_token / 3.0 + elementwise;
}

}  // namespace

StepEstimate estimate_step(const Recipe& recipe, const Hardware& hw, const PlanAssumptions& a,
                           bool size_memory) {
  Recipe r = recipe;
  r.train.device = Device::kCuda;
  r.train.dtype = DType::kBF16;
  const ModelConfig& m = r.model;
  const ParallelConfig& p = r.parallel;
  const Layout layout = layout_of(p);
  const ModelStats stats = model_stats(m, r.data.seq_len);

  StepEstimate e;
  e.gpus = layout.world();
  e.nvlink_domain = a.nvlink_domain > 0 ? a.nvlink_domain : hw.nvlink_domain;
  e.fp8_gemms = a.fp8_gemms;
  e.overlap = a.overlap;
  e.micro_batches = r.train.global_batch / (r.train.micro_batch * p.dp);
  e.tokens_per_step = static_cast<double>(r.train.global_batch * r.data.seq_len);
  e.flops_per_token = stats.flops_per_token();

  // The busiest stage: the most layers (and MoE layers) of any, over its chunks.
  int64_t layers = 0, moe_layers = 0;
  for (int64_t stage = 0; stage < p.pp; ++stage) {
    int64_t n = 0, moe = 0;
    for (const StageRange& s : stage_chunks(m.n_layers, p.pp, p.vpp, p.pp_layers, stage)) {
      for (int64_t l = s.begin; l < s.end; ++l) moe += m.moe && m.is_moe_layer(l) ? 1 : 0;
      n += s.end - s.begin;
    }
    layers = std::max(layers, n);
    moe_layers = std::max(moe_layers, moe);
  }
  const double balanced = static_cast<double>(m.n_layers) / static_cast<double>(p.pp);
  e.busiest_flops = e.flops_per_token * e.tokens_per_step / static_cast<double>(e.gpus) *
                    (static_cast<double>(layers) / balanced);
  e.recompute_flops_per_token = recompute_flops_per_token(m, stats, r.train.recompute);
  e.busiest_recompute_flops = e.recompute_flops_per_token * e.tokens_per_step /
                              static_cast<double>(e.gpus) *
                              (static_cast<double>(layers) / balanced);
  // Seconds per FLOP of the model's mix: the matmuls at the GEMMs' format's peak, the rest
  // (attention core) at bf16's. Full recompute reruns that mix; selective reruns the attention
  // core and elementwise ops, all at bf16's.
  const double matmul_share = stats.matmul_flops_per_token / e.flops_per_token;
  const double gemm_tflops = a.fp8_gemms ? hw.fp8_tflops : hw.bf16_tflops;
  const double model_mix = matmul_share / gemm_tflops + (1 - matmul_share) / hw.bf16_tflops;
  const double recompute_mix =
      r.train.recompute == Recompute::kFull ? model_mix : 1 / hw.bf16_tflops;
  e.compute_s = (e.busiest_flops * model_mix + e.busiest_recompute_flops * recompute_mix) /
                (1e12 * a.matmul_efficiency);
  e.bubble_s =
      e.compute_s * static_cast<double>(p.pp - 1) / static_cast<double>(p.vpp * e.micro_batches);

  // Parameters of one rank: the experts split over ep · etp, the rest over tp, both over pp.
  double expert_params = 0;
  if (m.moe) {
    expert_params =
        static_cast<double>(stats.moe_layers) *
        static_cast<double>(m.moe->n_experts * 3 * m.d_model * m.moe->expert_ffn_hidden);
  }
  const double dense_params = static_cast<double>(stats.total_params) - expert_params;
  const double pp_share = static_cast<double>(layers) / static_cast<double>(m.n_layers);
  const double local_dense = dense_params / static_cast<double>(p.tp) * pp_share;
  const double local_experts = expert_params / static_cast<double>(p.ep * p.etp) * pp_share;

  const double b = 2.0;  // bf16 activations
  // A rank's tokens of a micro-batch: its 2·cp chunks' share of each sequence.
  const double sequence_tokens = static_cast<double>(r.train.micro_batch * r.data.seq_len);
  const double tokens = sequence_tokens / static_cast<double>(p.cp);
  const double d = static_cast<double>(m.d_model), mb = static_cast<double>(e.micro_batches);
  const auto add = [&](const std::string& name, int64_t size, GroupKind kind, double bytes) {
    if (size <= 1) return;
    GroupTraffic g{.group = name, .size = size, .bytes = bytes};
    g.nvlink = inside_domain(layout, kind, e.nvlink_domain);
    const double rate = (g.nvlink ? hw.nvlink_gbps : hw.network_gbps) * 1e9 * a.link_efficiency;
    g.seconds = bytes / rate;
    e.traffic.push_back(g);
  };
  // The collectives a layer: the forward's and backward's, and what recomputation reruns.
  const Recompute rc = r.train.recompute;
  const double tp_moves = rc == Recompute::kFull ? 12 : rc == Recompute::kSelective ? 10 : 8;
  const double ep_moves = rc == Recompute::kFull ? 6 : 4;
  add("tp", p.tp, GroupKind::kTp,
      mb * static_cast<double>(layers) * tp_moves * ring_share(p.tp) * tokens * d * b);
  if (m.moe) {
    // Bytes a routed row takes: bf16's, or in FP8 with its scales for the forward's dispatch
    // (and full recomputation's second one) when the GEMMs run in FP8 with fp8.dispatch.
    const double row = d * b;
    const bool fp8_rows = a.fp8_gemms && r.fp8.kernel().dispatch;
    const double fp8_moves = !fp8_rows ? 0 : rc == Recompute::kFull ? 2 : 1;
    const double dispatch_row = static_cast<double>(fp8_row_bytes(m.d_model, r.fp8.kernel()));
    add("ep", p.ep, GroupKind::kEp,
        mb * static_cast<double>(moe_layers) * ring_share(p.ep) *
            (tokens / static_cast<double>(p.tp)) * static_cast<double>(m.moe->top_k) *
            ((ep_moves - fp8_moves) * row + fp8_moves * dispatch_row));
  }
  if (p.cp > 1) {
    // The keys and values a rank holds per token: GQA's Hk / tp heads of k and v, Dh each (a kv
    // head shared by several TP ranks when Hk < tp); MLA's H / tp heads of its expanded keys
    // (dn + dr) and values (dv).
    const double tp = static_cast<double>(p.tp);
    const double kv_width =
        m.is_mla() ? static_cast<double>(m.n_heads) / tp *
                         static_cast<double>(m.mla->qk_nope_head_dim + m.mla->qk_rope_head_dim +
                                             m.mla->v_head_dim)
                   : 2 * std::max(1.0, static_cast<double>(m.n_kv_heads) / tp) *
                         static_cast<double>(m.head_dim);
    const double cp_moves = rc == Recompute::kNone ? 3 : 4;
    add("cp", p.cp, GroupKind::kCp,
        mb * static_cast<double>(layers) * cp_moves * ring_share(p.cp) * sequence_tokens *
            kv_width * b);
  }
  // Each micro-batch's activations and gradients cross a rank's boundaries once per chunk.
  add("pp", p.pp, GroupKind::kPp,
      mb * 2 * static_cast<double>(p.vpp) * (tokens / static_cast<double>(p.tp)) * d * b);
  // Dense gradients are summed over cp · dp (each CP rank saw other tokens of the sequences).
  const int64_t dense_replicas = p.dp * p.cp;
  add("dp", dense_replicas, p.cp > 1 ? GroupKind::kDpCp : GroupKind::kDp,
      2 * ring_share(dense_replicas) * 4 * local_dense);
  add("edp", p.edp, GroupKind::kEdp, 2 * ring_share(p.edp) * 4 * local_experts);

  const double local = local_dense + local_experts;
  const double optimizer_params = p.zero1 ? local / static_cast<double>(dense_replicas) : local;
  e.optimizer_s = 30 * optimizer_params / (hw.hbm_tbps * 1e12 * a.hbm_efficiency);

  for (const GroupTraffic& g : e.traffic) e.communication_s += g.seconds;
  e.step_s =
      (a.overlap ? std::max(e.compute_s, e.communication_s) : e.compute_s + e.communication_s) +
      e.bubble_s + e.optimizer_s;
  e.tokens_per_s = e.tokens_per_step / e.step_s;
  e.tflops_per_gpu = e.flops_per_token * e.tokens_per_s / static_cast<double>(e.gpus) / 1e12;
  e.mfu = e.tflops_per_gpu / (a.fp8_gemms ? hw.fp8_tflops : hw.bf16_tflops);

  if (!size_memory) return e;
  e.memory = plan_memory(r);
  for (const StageMemory& s : e.memory) e.peak_bytes = std::max(e.peak_bytes, s.total());
  e.fits = static_cast<double>(e.peak_bytes) + a.reserve_gib * kGiB <= hw.memory_gib * kGiB;
  return e;
}

}  // namespace tmt
