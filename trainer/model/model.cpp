#include "trainer/model/model.h"

#include "kernels/copy.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/linear.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"

namespace tmt {

Model::Model(const Recipe& recipe, const Context& ctx, DType dtype, int64_t micro_batch,
             Communicator* ep, int64_t shard_multiple)
    : recipe_(&recipe) {
  const ModelConfig& m = recipe.model;
  env_.ctx = ctx;
  env_.recipe = &recipe;
  env_.batch = micro_batch;
  env_.seq = recipe.data.seq_len;
  env_.dtype = dtype;
  env_.ep = ep;
  embedding_ = add_param(params_, "embedding", {m.vocab_size, m.d_model}, ParamKind::kDense, true,
                         ParamInit::kNormal, m.init_std);
  for (int64_t l = 0; l < m.n_layers; ++l)
    blocks_.push_back(std::make_unique<Block>(env_, l, params_));
  final_norm_ = add_param(params_, "final_norm", {m.d_model}, ParamKind::kDense, false,
                          ParamInit::kOnes, 0.0);
  head_ = m.tie_embeddings ? embedding_
                           : add_param(params_, "head", {m.vocab_size, m.d_model},
                                       ParamKind::kDense, true, ParamInit::kNormal, m.init_std);
  params_.allocate(ctx.device, dtype, shard_multiple);
  params_.initialize(recipe.train.seed);

  Arena count_acts = Arena::counting(ctx.device);
  Arena count_scratch = Arena::counting(ctx.device);
  allocate_activations(count_acts, count_scratch);
  acts_ = Arena(ctx.device, count_acts.peak(), "activations");
  scratch_ = Arena(ctx.device, count_scratch.peak(), "scratch");
  allocate_activations(acts_, scratch_);

  // Positions repeat 0..S-1 for each sequence of the micro-batch; the RoPE tables cover them.
  int32_t* pos = positions_.ptr<int32_t>();
  for (int64_t i = 0; i < env_.tokens(); ++i) pos[i] = static_cast<int32_t>(i % env_.seq);
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
  const int64_t t = env_.tokens();
  x_.clear();
  for (int64_t l = 0; l <= m.n_layers; ++l) x_.push_back(acts.alloc(env_.dtype, {t, m.d_model}));
  hf_ = acts.alloc(env_.dtype, {t, m.d_model});
  rstd_f_ = acts.alloc(env_.dtype, {t});
  logits_ = acts.alloc(env_.dtype, {t, m.vocab_size});
  losses_ = acts.alloc(env_.dtype, {t});
  positions_ = acts.alloc(DType::kI32, {t});
  rope_cos_ = acts.alloc(env_.dtype, {env_.seq, m.head_dim / 2});
  rope_sin_ = acts.alloc(env_.dtype, {env_.seq, m.head_dim / 2});
  // backward holds dx [T, D] and dhf [T, D] while each block takes its scratch on top.
  const size_t mark = scratch.mark();
  scratch.alloc(env_.dtype, {t, m.d_model});
  scratch.alloc(env_.dtype, {t, m.d_model});
  for (auto& b : blocks_) b->allocate(acts, scratch);
  scratch.reset(mark);
}

LossParts Model::run_forward(const MicroBatch& batch, double lm_grad_scale, double aux_weight) {
  const Context& ctx = env_.ctx;
  const ModelConfig& m = recipe_->model;
  const int64_t t = env_.tokens();
  TMT_CHECK(batch.inputs.numel() == t && batch.targets.numel() == t,
            "micro-batch {} does not match {} tokens", batch.inputs.str(), t);
  const Tensor ids = batch.inputs.view({t});
  embedding_fwd(ctx, x_[0], ids, params_[embedding_].value, 0);
  const Block::Rope rope{positions_, rope_cos_, rope_sin_};
  LossParts parts;
  for (size_t l = 0; l < blocks_.size(); ++l) {
    const MoeStats s = blocks_[l]->forward(x_[l + 1], x_[l], rope, aux_weight);
    if (blocks_[l]->is_moe()) {
      parts.aux_loss += s.aux_loss;
      parts.z_loss += s.z_loss;
      parts.max_load.push_back(s.max_load);
      parts.dropped += s.dropped;
    }
  }
  rmsnorm_fwd(ctx, hf_, rstd_f_, x_[static_cast<size_t>(m.n_layers)], params_[final_norm_].value,
              m.norm_eps);
  linear_fwd(ctx, logits_, hf_, params_[head_].value, false);
  // The fused loss writes dlogits over the logits: they are not needed afterwards.
  const Tensor targets = batch.targets.view({t});
  cross_entropy(ctx, losses_, logits_, logits_, targets, lm_grad_scale);
  const int32_t* tg = targets.ptr<const int32_t>();
  for (int64_t i = 0; i < t; ++i) {
    if (tg[i] < 0) continue;
    parts.lm_loss_sum += load_element(losses_.dtype, losses_.data, static_cast<size_t>(i));
    ++parts.lm_tokens;
  }
  return parts;
}

LossParts Model::forward(const MicroBatch& batch) { return run_forward(batch, 0.0, 0.0); }

LossParts Model::forward_backward(const MicroBatch& batch, double lm_grad_scale,
                                  double aux_weight) {
  LossParts parts = run_forward(batch, lm_grad_scale, aux_weight);
  const Context& ctx = env_.ctx;
  const ModelConfig& m = recipe_->model;
  const int64_t t = env_.tokens();
  const size_t mark = scratch_.mark();
  const Tensor dx = scratch_.alloc(env_.dtype, {t, m.d_model});
  const Tensor dhf = scratch_.alloc(env_.dtype, {t, m.d_model});
  // logits_ now holds dlogits.
  linear_bwd(ctx, dhf, params_[head_].grad, logits_, hf_, params_[head_].value, false);
  rmsnorm_bwd(ctx, dx, params_[final_norm_].grad, dhf, x_[static_cast<size_t>(m.n_layers)],
              params_[final_norm_].value, rstd_f_);
  const Block::Rope rope{positions_, rope_cos_, rope_sin_};
  for (size_t l = blocks_.size(); l-- > 0;) blocks_[l]->backward(dx, x_[l], rope);
  embedding_bwd(ctx, params_[embedding_].grad, dx, batch.inputs.view({t}), 0);
  scratch_.reset(mark);
  return parts;
}

}  // namespace tmt
