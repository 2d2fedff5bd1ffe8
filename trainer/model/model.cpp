#include "trainer/model/model.h"

#include <algorithm>

#include "kernels/attention.h"
#include "kernels/copy.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/grouped_linear.h"
#include "kernels/linear.h"
#include "kernels/moe_dispatch.h"
#include "kernels/reduce.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/router.h"
#include "trainer/stages.h"

namespace tmt {

Model::Model(const Recipe& recipe, const Context& ctx, DType dtype, int64_t micro_batch,
             const ModelShard& shard)
    : recipe_(&recipe) {
  const ModelConfig& m = recipe.model;
  env_.ctx = ctx;
  env_.recipe = &recipe;
  env_.batch = micro_batch;
  env_.seq = recipe.data.seq_len;
  env_.dtype = dtype;
  env_.tp = shard.tp;
  env_.experts = shard.experts;
  env_.etp = shard.etp;
  const int64_t tp = env_.tp_size();
  TMT_CHECK(env_.tokens() % tp == 0 && m.vocab_size % tp == 0,
            "{} tokens / vocabulary {} over {} tensor-parallel ranks", env_.tokens(), m.vocab_size,
            tp);
  const StageRange stage = pipeline_stages(recipe)[static_cast<size_t>(shard.stage)];
  first_layer_ = stage.begin;
  last_layer_ = stage.end;
  last_ = stage.end == m.n_layers;
  vocab_local_ = m.vocab_size / tp;
  vocab_start_ = env_.tp_rank() * vocab_local_;
  for (int64_t l = 0; l < m.n_layers; ++l) {
    const bool moe = m.moe && m.is_moe_layer(l);
    if (l >= first_layer_ && l < last_layer_) moe_index_.push_back(moe ? moe_layers_ : -1);
    moe_layers_ += moe ? 1 : 0;
  }

  // The embedding and the head: rows [vocab_start, vocab_start + V/tp) of [V, D].
  const auto vocab_rows = [&](const std::string& name) {
    return add_param_block(params_, name, {m.vocab_size, m.d_model}, {vocab_start_, 0},
                           {vocab_local_, m.d_model}, ParamKind::kDense, true, ParamInit::kNormal,
                           m.init_std);
  };
  if (first_stage()) embedding_ = vocab_rows("embedding");
  slots_.resize(static_cast<size_t>(std::max<int64_t>(shard.in_flight, 1)));
  for (Slot& s : slots_) {
    // Each slot's blocks declare the same parameters: the store hands back the first copy's.
    for (int64_t l = first_layer_; l < last_layer_; ++l)
      s.blocks.push_back(std::make_unique<Block>(env_, l, params_));
  }
  if (last_) {
    final_norm_ = add_param(params_, "final_norm", {m.d_model}, ParamKind::kDense, false,
                            ParamInit::kOnes, 0.0, tp);
    head_ = m.tie_embeddings ? embedding_ : vocab_rows("head");
  }
  // Master weights and gradients in f32 (f64 for gradient checks); bf16 is only the compute copy.
  params_.allocate(ctx.device, dtype == DType::kBF16 ? DType::kF32 : dtype, dtype,
                   shard.shard_multiple);
  params_.initialize(recipe.train.seed);
  if (tp > m.n_kv_heads) {  // the ranks that hold the same kv head sum its gradient
    const int64_t share = tp / m.n_kv_heads;
    kv_replicas_ =
        env_.tp->split(static_cast<int>(env_.tp_rank() / share), static_cast<int>(env_.tp_rank()));
  }

  Arena count_acts = Arena::counting(ctx.device);
  Arena count_scratch = Arena::counting(ctx.device);
  allocate_activations(count_acts, count_scratch);
  acts_ = Arena(ctx.device, count_acts.peak(), "activations");
  // Backward's temporaries are written before they are read: no memset per allocation.
  scratch_ = Arena(ctx.device, count_scratch.peak(), "scratch", Arena::Fill::kUninitialized);
  allocate_activations(acts_, scratch_);

  // Positions repeat 0..S-1 for each sequence of the micro-batch; the RoPE tables cover them.
  std::vector<int32_t> pos(static_cast<size_t>(env_.tokens()));
  for (size_t i = 0; i < pos.size(); ++i)
    pos[i] = static_cast<int32_t>(static_cast<int64_t>(i) % env_.seq);
  copy_from_host(ctx, positions_.view({env_.tokens()}), pos.data());
  if (last_) {
    losses_host_.resize(static_cast<size_t>(env_.tokens()) * dtype_size(env_.stat_dtype()));
    targets_host_.resize(static_cast<size_t>(env_.tokens()));
  }
  RopeParams rp;
  rp.head_dim = m.head_dim;
  rp.theta = m.rope_theta;
  rp.scaling = m.rope_scaling.type == "yarn" ? RopeScalingType::kYarn : RopeScalingType::kNone;
  rp.factor = m.rope_scaling.factor;
  rp.original_max_seq_len = m.rope_scaling.original_max_seq_len;
  rp.beta_fast = m.rope_scaling.beta_fast;
  rp.beta_slow = m.rope_scaling.beta_slow;
  rp.mscale = m.rope_scaling.mscale;
  rope_tables(ctx, rope_cos_, rope_sin_, rp);
}

void Model::allocate_activations(Arena& acts, Arena& scratch) {
  const ModelConfig& m = recipe_->model;
  const int64_t t = env_.tokens(), tl = env_.local_tokens(), d = m.d_model;
  const DType f = env_.dtype, stat = env_.stat_dtype();
  const bool tp = env_.tp_size() > 1;
  positions_ = acts.alloc(DType::kI32, {t});
  rope_cos_ = acts.alloc(stat, {env_.seq, m.head_dim / 2});
  rope_sin_ = acts.alloc(stat, {env_.seq, m.head_dim / 2});
  // The embedding's and the head's temporaries: a [T, D] partial or gradient, and a [T, D] one.
  const size_t mark = scratch.mark();
  scratch.alloc(f, {t, d});
  scratch.alloc(f, {t, d});
  for (Slot& s : slots_) {
    s.x.clear();
    for (int64_t l = first_layer_; l <= last_layer_; ++l) s.x.push_back(acts.alloc(f, {tl, d}));
    s.dx = acts.alloc(f, {tl, d});
    if (last_) {
      s.hf = acts.alloc(f, {tl, d});
      s.rstd_f = acts.alloc(stat, {tl});
      s.hf_full = tp ? acts.alloc(f, {t, d}) : s.hf;
      s.logits = acts.alloc(f, {t, vocab_local_});
      s.losses = acts.alloc(stat, {t});
      s.ce_stats = acts.alloc(DType::kF64, {3, t});  // row max, Σ exp, target logit
    }
    for (auto& b : s.blocks) b->allocate(acts, scratch);
  }
  scratch.reset(mark);
}

LossParts Model::forward(int64_t slot, const MicroBatch& batch, double lm_grad_scale,
                         double aux_weight) {
  const Context& ctx = env_.ctx;
  const int64_t t = env_.tokens();
  TMT_CHECK(batch.inputs.numel() == t && batch.targets.numel() == t,
            "micro-batch {} does not match {} tokens", batch.inputs.str(), t);
  Slot& s = slots_[static_cast<size_t>(slot)];
  if (first_stage()) {
    const Tensor ids = batch.inputs.view({t});
    if (env_.tp_size() == 1) {
      embedding_fwd(ctx, s.x[0], ids, params_[embedding_].weight, 0);
    } else {  // each rank looks up the ids in its rows (zeros elsewhere); the sum is the embedding
      const size_t mark = scratch_.mark();
      const Tensor partial = scratch_.alloc(env_.dtype, {t, recipe_->model.d_model});
      embedding_fwd(ctx, partial, ids, params_[embedding_].weight, vocab_start_);
      scatter_sequence(env_, s.x[0], partial);
      scratch_.reset(mark);
    }
  }
  const Block::Rope rope{positions_, rope_cos_, rope_sin_};
  LossParts parts;
  parts.max_load.assign(static_cast<size_t>(moe_layers_), 0.0);
  for (size_t l = 0; l < s.blocks.size(); ++l) {
    const MoeStats st = s.blocks[l]->forward(s.x[l + 1], s.x[l], rope, aux_weight);
    if (s.blocks[l]->is_moe()) {
      parts.aux_loss += st.aux_loss;
      parts.z_loss += st.z_loss;
      parts.max_load[static_cast<size_t>(moe_index_[l])] = st.max_load;
      parts.dropped += st.dropped;
    }
  }
  if (last_) loss(s, batch, lm_grad_scale, parts);
  return parts;
}

void Model::loss(Slot& s, const MicroBatch& batch, double lm_grad_scale, LossParts& parts) {
  const Context& ctx = env_.ctx;
  const ModelConfig& m = recipe_->model;
  const int64_t t = env_.tokens();
  rmsnorm_fwd(ctx, s.hf, s.rstd_f, s.x.back(), params_[final_norm_].weight, m.norm_eps);
  if (env_.tp_size() > 1) gather_sequence(env_, s.hf_full, s.hf);
  linear_fwd(ctx, s.logits, s.hf_full, params_[head_].weight, false);
  // The gradient overwrites the logits in place: they are not needed afterwards.
  const Tensor targets = batch.targets.view({t});
  if (env_.tp_size() == 1) {
    cross_entropy(ctx, s.losses, s.logits, s.logits, targets, lm_grad_scale);
  } else {
    const Tensor row_max = s.ce_stats.slice(0, 1).view({t});
    const Tensor sums = s.ce_stats.slice(1, 3);  // Σ exp and the target logit, reduced together
    cross_entropy_row_max(ctx, row_max, s.logits);
    env_.tp->all_reduce(row_max, ReduceOp::kMax);
    cross_entropy_sum_exp(ctx, sums.slice(0, 1).view({t}), s.logits, row_max);
    cross_entropy_target_logit(ctx, sums.slice(1, 2).view({t}), s.logits, targets, vocab_start_);
    env_.tp->all_reduce(sums);
    cross_entropy_loss(ctx, s.losses, row_max, sums.slice(0, 1).view({t}),
                       sums.slice(1, 2).view({t}), targets);
    cross_entropy_grad(ctx, s.logits, s.logits, targets, row_max, sums.slice(0, 1).view({t}),
                       vocab_start_, lm_grad_scale);
  }
  // The sum over the counted targets, on the host (the losses may be on the device).
  TMT_CHECK(targets.dtype == DType::kI32, "targets {}", targets.str());
  const int32_t* tg = targets.ptr<const int32_t>();
  const void* losses = s.losses.data;
  if (ctx.device != Device::kCpu) {  // host memory already on the CPU: no copies there
    copy_to_host(ctx, targets_host_.data(), targets);
    copy_to_host(ctx, losses_host_.data(), s.losses);
    tg = targets_host_.data();
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
  const ModelConfig& m = recipe_->model;
  const int64_t t = env_.tokens();
  const bool tp = env_.tp_size() > 1;
  Slot& s = slots_[static_cast<size_t>(slot)];
  const size_t mark = scratch_.mark();
  if (last_) {  // s.logits holds dlogits
    const Tensor dhf_full = scratch_.alloc(env_.dtype, {t, m.d_model});
    const Tensor dhf = tp ? scratch_.alloc(env_.dtype, {env_.local_tokens(), m.d_model}) : dhf_full;
    linear_bwd(ctx, dhf_full, params_[head_].grad, s.logits, s.hf_full, params_[head_].weight,
               false);
    if (tp) scatter_sequence(env_, dhf, dhf_full);
    rmsnorm_bwd(ctx, s.dx, params_[final_norm_].grad, dhf, s.x.back(), params_[final_norm_].weight,
                s.rstd_f);
    scratch_.reset(mark);
  }
  const Block::Rope rope{positions_, rope_cos_, rope_sin_};
  for (size_t l = s.blocks.size(); l-- > 0;) s.blocks[l]->backward(s.dx, s.x[l], rope);
  if (first_stage()) {
    const Tensor ids = batch.inputs.view({t});
    if (!tp) {
      embedding_bwd(ctx, params_[embedding_].grad, s.dx, ids, 0);
    } else {
      const Tensor dx_full = scratch_.alloc(env_.dtype, {t, m.d_model});
      gather_sequence(env_, dx_full, s.dx);
      embedding_bwd(ctx, params_[embedding_].grad, dx_full, ids, vocab_start_);
      scratch_.reset(mark);
    }
  }
}

LossParts Model::forward_backward(const MicroBatch& batch, double lm_grad_scale,
                                  double aux_weight) {
  TMT_CHECK(first_stage() && last_, "forward_backward: a pipeline stage needs the schedule");
  LossParts parts = forward(0, batch, lm_grad_scale, aux_weight);
  backward(0, batch);
  return parts;
}

LossParts Model::forward(const MicroBatch& batch) {
  TMT_CHECK(first_stage() && last_, "forward: a pipeline stage needs the schedule");
  return forward(0, batch, 0.0, 0.0);
}

void Model::reduce_tp_replicated_grads() {
  if (env_.tp_size() == 1) return;
  for (const ParamGroup& g : params_.groups()) {
    if (g.tp_replicas == 1) continue;
    Communicator* group = g.tp_replicas == env_.tp_size() ? env_.tp : kv_replicas_.get();
    TMT_CHECK(group != nullptr && group->size() == g.tp_replicas,
              "no group of {} tensor-parallel replicas", g.tp_replicas);
    group->all_reduce(g.grads);
  }
}

size_t Model::workspace_bytes() const {
  const ModelConfig& m = recipe_->model;
  const Device device = env_.ctx.device;
  // The projections and the head; attention's backward over this rank's H/tp heads of the whole
  // micro-batch (B sequences of S).
  size_t bytes = std::max(
      linear_workspace_bytes(device),
      attention_bwd_workspace_bytes(device, env_.batch, env_.seq, m.n_heads / env_.tp_size()));
  if (m.moe) {
    // The dispatch plans: this rank's T/tp tokens' K choices each, and the expert exchange's
    // reorder of what arrives from each of the etp·ep ranks of the expert group (up to all of
    // their assignments: parallel/expert_exchange.h).
    const int64_t ranks = env_.experts != nullptr ? env_.experts->size() : 1;
    const int64_t assignments = ranks * env_.local_tokens() * m.moe->top_k;
    bytes = std::max({bytes, grouped_linear_workspace_bytes(device),
                      moe_dispatch_workspace_bytes(device, assignments),
                      router_loss_workspace_bytes(device, m.moe->n_experts)});
  }
  return bytes;
}

}  // namespace tmt
