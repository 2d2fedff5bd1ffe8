#include "trainer/model/model.h"

#include <algorithm>

#include "kernels/attention.h"
#include "kernels/copy.h"
#include "kernels/embedding.h"
#include "kernels/fp8.h"
#include "kernels/grouped_linear.h"
#include "kernels/linear.h"
#include "kernels/moe_dispatch.h"
#include "kernels/reduce.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/router.h"
#include "parallel/vocab_parallel.h"

namespace tmt {

Model::Model(const ModelConfig& config, const ModelRun& run, const Context& ctx,
             const ModelShard& shard)
    : config_(config) {
  std::optional<Arena::DryRun> dry;
  if (run.dry) dry.emplace();
  const ModelConfig& m = config_;
  env_.ctx = ctx;
  env_.model = &config_;
  env_.batch = run.micro_batch;
  env_.cp = ContextParallel(shard.cp, run.seq_len);
  env_.seq = env_.cp.local_seq();
  env_.dtype = run.dtype;
  env_.sp = SequenceParallel(shard.tp, env_.tokens());
  env_.experts = shard.experts;
  env_.etp = shard.etp;
  env_.recompute = run.recompute;
  env_.fp8 = run.fp8;
  recompute_ = run.recompute;
  const int64_t tp = env_.tp_size();
  TMT_CHECK(m.vocab_size % tp == 0, "vocabulary {} over {} tensor-parallel ranks", m.vocab_size,
            tp);
  const std::vector<ModelChunk> chunks =
      shard.chunks.empty() ? std::vector<ModelChunk>{{.layers = {0, m.n_layers}}} : shard.chunks;
  std::vector<int64_t> moe_index;  // per layer of the model
  for (int64_t l = 0; l < m.n_layers; ++l) {
    const bool moe = m.moe && m.is_moe_layer(l);
    moe_index.push_back(moe ? moe_layers_ : -1);
    moe_layers_ += moe ? 1 : 0;
  }
  for (const ModelChunk& c : chunks) {
    TMT_CHECK(c.layers.begin < c.layers.end && c.layers.end <= m.n_layers &&
                  (chunks_.empty() || chunks_.back().end <= c.layers.begin),
              "model chunk [{}, {}) of {} layers", c.layers.begin, c.layers.end, m.n_layers);
    Chunk k{.begin = c.layers.begin,
            .end = c.layers.end,
            .embedding = c.layers.begin == 0,
            .head = c.layers.end == m.n_layers,
            .first_slot = chunks_.empty() ? 0 : chunks_.back().first_slot + chunks_.back().slots,
            .slots = static_cast<size_t>(std::max<int64_t>(c.in_flight, 1)),
            .moe_index = {}};
    k.moe_index.assign(moe_index.begin() + k.begin, moe_index.begin() + k.end);
    chunks_.push_back(std::move(k));
  }
  vocab_local_ = m.vocab_size / tp;
  vocab_start_ = env_.tp_rank() * vocab_local_;

  // The embedding and the head: rows [vocab_start, vocab_start + V/tp) of [V, D].
  const auto vocab_rows = [&](const std::string& name) {
    return params_.add({.name = name,
                        .global_shape = {m.vocab_size, m.d_model},
                        .local_shape = {vocab_local_, m.d_model},
                        .offset = {vocab_start_, 0},
                        .init_std = m.init_std});
  };
  if (first_stage()) embedding_ = vocab_rows("embedding");
  // Each slot's blocks declare the same parameters: the store hands back the first copy's. Under
  // full recomputation a chunk's first slot's blocks serve its every slot.
  for (size_t c = 0; c < chunks_.size(); ++c) {
    const Chunk& chunk = chunks_[c];
    for (size_t k = 0; k < chunk.slots; ++k) {
      Slot& s = slots_.emplace_back();
      s.chunk = c;
      if (full() && k > 0) continue;
      for (int64_t l = chunk.begin; l < chunk.end; ++l)
        s.blocks.push_back(std::make_unique<Block>(env_, l, params_));
    }
  }
  if (last_stage()) {
    final_norm_ = params_.add({.name = "final_norm",
                               .global_shape = {m.d_model},
                               .decay = false,
                               .init = ParamInit::kOnes,
                               .tp_replicas = tp});
    head_ = m.tie_embeddings ? embedding_ : vocab_rows("head");
  }
  // Master weights and gradients in f32 (f64 for gradient checks); bf16 is only the compute copy.
  params_.allocate(ctx.device, run.dtype == DType::kBF16 ? DType::kF32 : run.dtype, run.dtype,
                   shard.shard_multiple);
  if (!run.dry) params_.initialize(run.seed);

  Arena count_acts = Arena::counting(ctx.device);
  Arena count_scratch = Arena::counting(ctx.device);
  allocate_activations(count_acts, count_scratch);
  acts_ = Arena(ctx.device, count_acts.peak(), "activations");
  // Backward's temporaries are written before they are read: no memset per allocation.
  scratch_ = Arena(ctx.device, count_scratch.peak(), "scratch", Arena::Fill::kUninitialized);
  allocate_activations(acts_, scratch_);
  plan_expert_rows();
  if (run.dry) return;

  // Positions repeat 0..S-1 for each sequence of the micro-batch (under context parallelism this
  // rank's chunks' positions); the RoPE tables cover them.
  std::vector<int32_t> pos(static_cast<size_t>(env_.tokens()));
  for (size_t i = 0; i < pos.size(); ++i)
    pos[i] = static_cast<int32_t>(env_.cp.position(static_cast<int64_t>(i) % env_.seq));
  copy_from_host(ctx, positions_.view({env_.tokens()}), pos.data());
  if (last_stage()) {
    losses_host_.resize(static_cast<size_t>(env_.tokens()) * dtype_size(env_.stat_dtype()));
    targets_host_.resize(static_cast<size_t>(env_.tokens()));
  }
  rope_tables(ctx, rope_cos_, rope_sin_, m.rope_params());
  if (rope_q_scale_.defined()) {
    rope_position_scale(ctx, rope_q_scale_, m.rope_scaling.llama_4_beta,
                        m.rope_scaling.llama_4_original_max_seq_len);
  }
}

std::vector<StageRange> Model::layers() const {
  std::vector<StageRange> ranges;
  for (const Chunk& c : chunks_) ranges.push_back({c.begin, c.end});
  return ranges;
}

AttentionLayer::Rope Model::rope_args() const {
  return {.positions = positions_,
          .cos = rope_cos_,
          .sin = rope_sin_,
          .q_scale = rope_q_scale_,
          .layout = config_.rope_interleaved ? RopeLayout::kInterleaved : RopeLayout::kHalf};
}

void Model::allocate_activations(Arena& acts, Arena& scratch) {
  const ModelConfig& m = config_;
  const int64_t t = env_.tokens(), tl = env_.local_tokens(), d = m.d_model;
  const DType f = env_.dtype, stat = env_.stat_dtype();
  positions_ = acts.alloc(DType::kI32, {t});
  const int64_t seq = env_.cp.seq();  // the whole sequence's positions
  rope_cos_ = acts.alloc(stat, {seq, m.rotary_dim() / 2});
  rope_sin_ = acts.alloc(stat, {seq, m.rotary_dim() / 2});
  if (m.rope_scaling.llama_4_beta > 0) rope_q_scale_ = acts.alloc(stat, {seq});
  for (Slot& s : slots_) {
    const Chunk& chunk = chunks_[s.chunk];
    s.x.clear();
    for (int64_t l = chunk.begin; l <= chunk.end; ++l) s.x.push_back(acts.alloc(f, {tl, d}));
    s.dx = acts.alloc(f, {tl, d});
    if (chunk.head) {
      s.normed = acts.alloc(f, {tl, d});
      s.norm_rstd = acts.alloc(stat, {tl});
      s.normed_full = env_.sp.gathered(acts, s.normed);
      s.logits = acts.alloc(f, {t, vocab_local_});
      s.losses = acts.alloc(stat, {t});
      s.ce_stats = acts.alloc(DType::kF64, {3, t});  // row max, Σ exp, target logit
    }
    for (auto& b : s.blocks) {
      if (!full()) b->allocate(acts, scratch);  // (full: below)
    }
  }
  if (full()) {
    // One block's internals at a time: every block's (of every chunk) start at the same place,
    // and the region ends where the largest one's do. Backward holds its rerun's output [Tl, D]
    // in the scratch through the block's passes.
    const size_t base = acts.mark(), scratch_mark = scratch.mark();
    size_t top = base;
    scratch.alloc(f, {tl, d});
    for (const Chunk& chunk : chunks_) {
      for (auto& b : slots_[chunk.first_slot].blocks) {
        acts.reset(base);
        b->allocate(acts, scratch);
        top = std::max(top, acts.mark());
      }
    }
    acts.reset(top);
    scratch.reset(scratch_mark);
  }
  const size_t mark = scratch.mark();
  if (first_stage()) embedding_temps(scratch, slots_.front().dx);
  scratch.reset(mark);
  if (last_stage()) head_temps(scratch);
  scratch.reset(mark);
}

void Model::plan_expert_rows() {
  // Per slot, what its chunk's MoE layers keep; under full recomputation one MoE layer's kept rows
  // are live at a time, for every slot of every chunk (one stack).
  std::vector<size_t> kept(slots_.size(), 0);
  size_t most = 0, scratch = 0;
  for (const Chunk& chunk : chunks_) {
    size_t chunk_kept = 0;
    for (auto& b : slots_[chunk.first_slot].blocks) {
      if (MoeLayer* moe = b->moe()) {
        const int64_t rows = moe->planned_received();
        chunk_kept += moe->kept_bytes(rows);
        most = std::max(most, moe->kept_bytes(rows));
        scratch = std::max(scratch, moe->scratch_bytes(rows));
      }
    }
    std::fill_n(kept.begin() + static_cast<std::ptrdiff_t>(chunk.first_slot), chunk.slots,
                chunk_kept);
  }
  if (most == 0) return;  // no MoE layer on this stage
  if (full()) kept.assign(1, most);
  expert_rows_ = ExpertRows(env_.ctx.device, kept, scratch);
  for (size_t slot = 0; slot < slots_.size(); ++slot) {
    for (auto& b : slots_[slot].blocks) {
      if (MoeLayer* moe = b->moe())
        moe->bind(expert_rows_, full() ? 0 : static_cast<int64_t>(slot));
    }
  }
}

Model::EmbeddingTemps Model::embedding_temps(Arena& scratch, const Tensor& dx) const {
  EmbeddingTemps g;
  g.partial = env_.sp.partial(scratch, env_.dtype, config_.d_model);
  g.dx_full = env_.sp.gathered(scratch, dx);
  return g;
}

Model::HeadTemps Model::head_temps(Arena& scratch) const {
  HeadTemps g;
  g.dnormed = scratch.alloc(env_.dtype, {env_.local_tokens(), config_.d_model});
  g.dnormed_partial = env_.sp.partial(scratch, env_.dtype, config_.d_model);
  return g;
}

LossParts Model::forward(int64_t slot, const MicroBatch& batch, double lm_grad_scale,
                         double aux_weight) {
  const Context& ctx = env_.ctx;
  const int64_t t = env_.tokens();
  TMT_CHECK(batch.inputs.numel() == t && batch.targets.numel() == t,
            "micro-batch {} does not match {} tokens", batch.inputs.str(), t);
  Slot& s = slots_[static_cast<size_t>(slot)];
  const Chunk& chunk = chunks_[s.chunk];
  // The slot's previous micro-batch is done with its expert rows (backward ran, or it was a
  // forward-only pass); under full recomputation the one stack empties before each MoE layer.
  if (expert_rows_.slots() > 0 && !full()) expert_rows_.kept(slot).reset();
  s.aux_weight = aux_weight;
  if (chunk.embedding) {
    // Each rank looks up the ids in its rows (zeros elsewhere); the sum is the embedding.
    const Tensor ids = batch.inputs.view({t});
    const size_t mark = scratch_.mark();
    const EmbeddingTemps e = embedding_temps(scratch_, s.dx);
    env_.sp.reduce_scatter(s.x[0], e.partial, [&](const Tensor& out) {
      embedding_fwd(ctx, out, ids, params_[embedding_].weight, vocab_start_);
    });
    scratch_.reset(mark);
  }
  const Block::Rope rope = rope_args();
  LossParts parts;
  parts.max_load.assign(static_cast<size_t>(moe_layers_), 0.0);
  const int64_t experts = config_.moe ? config_.moe->n_experts : 0;
  parts.expert_load.assign(static_cast<size_t>(moe_layers_ * experts), 0.0);
  auto& bs = blocks(static_cast<size_t>(slot));
  for (size_t l = 0; l < bs.size(); ++l) {
    if (full() && bs[l]->is_moe()) expert_rows_.kept(0).reset();
    const MoeStats st = bs[l]->forward(s.x[l + 1], s.x[l], rope, aux_weight);
    if (bs[l]->is_moe()) {
      parts.aux_loss += st.aux_loss;
      parts.z_loss += st.z_loss;
      parts.max_load[static_cast<size_t>(chunk.moe_index[l])] = st.max_load;
      parts.dropped += st.dropped;
      std::copy(st.load.begin(), st.load.end(),
                parts.expert_load.begin() + chunk.moe_index[l] * experts);
    }
  }
  if (chunk.head) loss(s, batch, lm_grad_scale, parts);
  return parts;
}

void Model::update_expert_bias(const std::vector<double>& load) {
  if (!config_.moe || !config_.moe->expert_bias()) return;
  const int64_t e = config_.moe->n_experts;
  const double rate = config_.moe->bias_update_rate;
  std::vector<double> bias(static_cast<size_t>(e));
  for (const Chunk& chunk : chunks_) {
    for (int64_t l = chunk.begin; l < chunk.end; ++l) {
      const int64_t index = chunk.moe_index[static_cast<size_t>(l - chunk.begin)];
      if (index < 0) continue;
      const Param* found = params_.find("layers." + std::to_string(l) + ".moe.expert_bias");
      TMT_CHECK(found != nullptr, "layer {} has no expert bias", l);
      const Tensor& value = found->value;
      const Context ctx{value.device, nullptr};
      const double* counts = load.data() + index * e;
      double mean = 0;
      for (int64_t j = 0; j < e; ++j) mean += counts[j] / static_cast<double>(e);
      // The values in their dtype (f32, or f64 in gradient checks), moved in it: every rank applies
      // the same operations to the same numbers, so the biases stay bit-identical.
      if (value.dtype == DType::kF64) {
        copy_to_host(ctx, bias.data(), value);
        for (int64_t j = 0; j < e; ++j) {
          const double gap = mean - counts[j];
          bias[static_cast<size_t>(j)] += rate * static_cast<double>((gap > 0) - (gap < 0));
        }
        copy_from_host(ctx, value, bias.data());
      } else {
        std::vector<float> b(static_cast<size_t>(e));
        copy_to_host(ctx, b.data(), value);
        for (int64_t j = 0; j < e; ++j) {
          const double gap = mean - counts[j];
          b[static_cast<size_t>(j)] +=
              static_cast<float>(rate) * static_cast<float>((gap > 0) - (gap < 0));
        }
        copy_from_host(ctx, value, b.data());
      }
    }
  }
}

void Model::loss(Slot& s, const MicroBatch& batch, double lm_grad_scale, LossParts& parts) {
  const Context& ctx = env_.ctx;
  const int64_t t = env_.tokens();
  rmsnorm_fwd(ctx, s.normed, s.norm_rstd, s.x.back(), params_[final_norm_].weight,
              config_.norm_eps);
  env_.sp.gather(s.normed_full, s.normed);
  linear_fwd(ctx, s.logits, s.normed_full, params_[head_].weight);
  // The gradient overwrites the logits in place: they are not needed afterwards.
  const Tensor targets = batch.targets.view({t});
  vocab_parallel_cross_entropy(ctx, env_.sp.group(), s.losses, s.logits, s.logits, targets,
                               vocab_start_, lm_grad_scale, s.ce_stats);
  // The sum over the counted targets, on the host (the losses may be on the device).
  TMT_CHECK(targets.dtype == DType::kI32, "targets {}", targets.str());
  const int32_t* tg = targets.ptr<const int32_t>();
  const void* losses = s.losses.data;
  if (ctx.device != Device::kCpu) {  // host memory already on the CPU: no copies there
    if (batch.targets_host != nullptr) {
      tg = batch.targets_host;
    } else {
      copy_to_host(ctx, targets_host_.data(), targets);
      tg = targets_host_.data();
    }
    copy_to_host(ctx, losses_host_.data(), s.losses);
    losses = losses_host_.data();
  }
  for (int64_t i = 0; i < t; ++i) {
    if (tg[i] < 0) continue;
    parts.lm_loss_sum += load_element(s.losses.dtype, losses, static_cast<size_t>(i));
    ++parts.lm_tokens;
  }
}

void Model::backward(int64_t slot, const MicroBatch& batch) {
  const Context& ctx = env_.ctx;
  const int64_t t = env_.tokens();
  Slot& s = slots_[static_cast<size_t>(slot)];
  const Chunk& chunk = chunks_[s.chunk];
  const size_t mark = scratch_.mark();
  if (chunk.head) {  // s.logits holds dlogits
    const HeadTemps h = head_temps(scratch_);
    env_.sp.reduce_scatter(h.dnormed, h.dnormed_partial, [&](const Tensor& out) {
      linear_bwd(ctx, out, params_[head_].grad, s.logits, s.normed_full, params_[head_].weight);
    });
    rmsnorm_bwd(ctx, s.dx, params_[final_norm_].grad, h.dnormed, s.x.back(),
                params_[final_norm_].weight, s.norm_rstd);
    scratch_.reset(mark);
  }
  const Block::Rope rope = rope_args();
  auto& bs = blocks(static_cast<size_t>(slot));
  for (size_t l = bs.size(); l-- > 0;) {
    if (!full()) {
      bs[l]->backward(s.dx, s.x[l], rope);
      continue;
    }
    // The block's internals hold another block's or another micro-batch's: rerun its forward
    // from its input (statistics dropped: forward counted them), into a scratch output.
    const size_t rerun = scratch_.mark();
    const Tensor out = scratch_.alloc(env_.dtype, {env_.local_tokens(), config_.d_model});
    if (bs[l]->is_moe()) expert_rows_.kept(0).reset();
    bs[l]->forward(out, s.x[l], rope, s.aux_weight);
    bs[l]->backward(s.dx, s.x[l], rope);
    scratch_.reset(rerun);
  }
  if (chunk.embedding) {
    const EmbeddingTemps e = embedding_temps(scratch_, s.dx);
    env_.sp.gather(e.dx_full, s.dx);
    embedding_bwd(ctx, params_[embedding_].grad, e.dx_full, batch.inputs.view({t}), vocab_start_);
    scratch_.reset(mark);
  }
}

LossParts Model::forward_backward(const MicroBatch& batch, double lm_grad_scale,
                                  double aux_weight) {
  TMT_CHECK(chunks_.size() == 1 && first_stage() && last_stage(),
            "forward_backward: a pipeline stage needs the schedule");
  LossParts parts = forward(0, batch, lm_grad_scale, aux_weight);
  backward(0, batch);
  return parts;
}

LossParts Model::forward(const MicroBatch& batch) {
  TMT_CHECK(chunks_.size() == 1 && first_stage() && last_stage(),
            "forward: a pipeline stage needs the schedule");
  return forward(0, batch, 0.0, 0.0);
}

size_t Model::workspace_bytes() const {
  const ModelConfig& m = config_;
  const Device device = env_.ctx.device;
  // The projections and the head; attention over this rank's heads of the whole micro-batch
  // (B sequences of S), forward and backward.
  size_t bytes =
      std::max(linear_workspace_bytes(device), m.is_mla() ? MlaLayer::workspace_bytes(env_)
                                                          : AttentionLayer::workspace_bytes(env_));
  if (m.moe) {
    // The dispatch plans: this rank's T/tp tokens' K choices each, and the expert exchange's
    // reorder of what arrives from each of the etp·ep ranks of the expert group (up to all of
    // their assignments: parallel/expert_exchange.h). The expert GEMMs: this rank's E/ep experts.
    const int64_t ranks = env_.experts != nullptr ? env_.experts->size() : 1;
    const int64_t assignments = ranks * env_.local_tokens() * m.moe->top_k;
    const int64_t local_experts = m.moe->n_experts / (ranks / env_.etp);
    bytes = std::max({bytes, grouped_linear_workspace_bytes(device, local_experts),
                      moe_dispatch_workspace_bytes(device, assignments),
                      router_loss_workspace_bytes(device, m.moe->n_experts)});
  }
  // FP8 GEMMs: each weight's codes and scales and its operands' (kernels/fp8.h; 0 on the CPU).
  if (env_.fp8) {
    for (const Param& p : params_.all()) {
      if (!p.spec.gemm) continue;
      const Shape& s = p.spec.local_shape.rank() > 0 ? p.spec.local_shape : p.spec.global_shape;
      const int64_t k = s[s.rank() - 1];
      const int64_t n = s.numel() / k / (p.spec.kind == ParamKind::kExpert ? s[0] : 1);
      bytes = std::max(bytes, fp8_linear_workspace_bytes(device, n, k));
    }
  }
  return bytes;
}

}  // namespace tmt
