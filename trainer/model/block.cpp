#include "trainer/model/block.h"

#include "kernels/copy.h"
#include "kernels/reduce.h"
#include "kernels/rmsnorm.h"

namespace tmt {

Block::Block(const LayerEnv& env, int64_t layer, ParamStore& store)
    : env_(env), store_(&store), attention_(env, layer, store) {
  const ModelConfig& m = env.recipe->model;
  const std::string p = "layers." + std::to_string(layer) + ".";
  ffn_norm_ = add_param(store, p + "ffn_norm", {m.d_model}, ParamKind::kDense, false,
                        ParamInit::kOnes, 0.0, env.tp_size());
  if (m.moe && m.is_moe_layer(layer)) {
    moe_ = std::make_unique<MoeLayer>(env, layer, store);
    if (m.moe->n_shared_experts > 0) {
      shared_ = std::make_unique<FfnLayer>(
          env, p + "shared.", m.moe->n_shared_experts * m.moe->shared_expert_ffn_hidden, store);
    }
  } else {
    dense_ = std::make_unique<FfnLayer>(env, p + "ffn.", m.ffn_hidden, store);
  }
}

void Block::allocate(Arena& acts, Arena& scratch) {
  const int64_t t = env_.tokens(), tl = env_.local_tokens();
  const int64_t d = env_.recipe->model.d_model;
  const bool tp = env_.tp_size() > 1;
  attention_.allocate(acts, scratch);
  x_mid_ = acts.alloc(env_.dtype, {tl, d});
  h2_ = acts.alloc(env_.dtype, {tl, d});
  rstd2_ = acts.alloc(env_.stat_dtype(), {tl});
  h2_full_ = tp && (dense_ || shared_) ? acts.alloc(env_.dtype, {t, d}) : h2_;
  // backward() holds dh2 and dx_norm (and, under tp, the gathered dy, the partial dh2 and a chunk)
  // while the FFN's backward takes its own scratch on top.
  scratch_ = &scratch;
  const size_t mark = scratch.mark();
  scratch.alloc(env_.dtype, {tl, d});  // dh2
  scratch.alloc(env_.dtype, {tl, d});  // dx_norm
  if (tp) {
    scratch.alloc(env_.dtype, {t, d});   // dy_full, or forward's partial output
    scratch.alloc(env_.dtype, {t, d});   // dh2_full
    scratch.alloc(env_.dtype, {tl, d});  // a chunk of either
  }
  if (dense_) dense_->allocate(acts, scratch);
  if (moe_) moe_->allocate(acts, scratch);
  if (shared_) shared_->allocate(acts, scratch);
  scratch.reset(mark);
}

MoeStats Block::forward(const Tensor& x_out, const Tensor& x, const Rope& rope, double aux_weight) {
  const ParamStore& ps = *store_;
  const Context& ctx = env_.ctx;
  attention_.forward(x_mid_, x, rope.positions, rope.cos, rope.sin);
  rmsnorm_fwd(ctx, h2_, rstd2_, x_mid_, ps[ffn_norm_].weight, env_.recipe->model.norm_eps);
  copy(ctx, x_out, x_mid_);
  MoeStats stats;
  if (moe_) stats = moe_->forward(x_out, h2_, aux_weight);
  FfnLayer* ffn = dense_ ? dense_.get() : shared_.get();
  if (ffn == nullptr) return stats;
  if (env_.tp_size() == 1) {
    ffn->forward(x_out, h2_, true);
    return stats;
  }
  const int64_t t = env_.tokens(), tl = env_.local_tokens(), d = env_.recipe->model.d_model;
  const size_t mark = scratch_->mark();
  const Tensor partial = scratch_->alloc(env_.dtype, {t, d});
  const Tensor chunk = scratch_->alloc(env_.dtype, {tl, d});
  gather_sequence(env_, h2_full_, h2_);
  ffn->forward(partial, h2_full_, false);
  scatter_sequence(env_, chunk, partial);
  add(ctx, x_out, chunk);
  scratch_->reset(mark);
  return stats;
}

void Block::backward(const Tensor& dx, const Tensor& x, const Rope& rope) {
  ParamStore& ps = *store_;
  const Context& ctx = env_.ctx;
  const int64_t t = env_.tokens(), tl = env_.local_tokens();
  const int64_t d = env_.recipe->model.d_model;
  const size_t mark = scratch_->mark();
  const Tensor dh2 = scratch_->alloc(env_.dtype, {tl, d});
  const Tensor dx_norm = scratch_->alloc(env_.dtype, {tl, d});
  bool written = false;  // dh2 holds a gradient
  if (moe_) {
    moe_->backward(dh2, dx, h2_);
    written = true;
  }
  FfnLayer* ffn = dense_ ? dense_.get() : shared_.get();
  if (ffn != nullptr && env_.tp_size() == 1) {
    ffn->backward(dh2, dx, h2_, written);
  } else if (ffn != nullptr) {
    const Tensor dy_full = scratch_->alloc(env_.dtype, {t, d});
    const Tensor dh2_full = scratch_->alloc(env_.dtype, {t, d});
    const Tensor chunk = scratch_->alloc(env_.dtype, {tl, d});
    gather_sequence(env_, dy_full, dx);
    ffn->backward(dh2_full, dy_full, h2_full_, false);
    scatter_sequence(env_, written ? chunk : dh2, dh2_full);
    if (written) add(ctx, dh2, chunk);
  }
  rmsnorm_bwd(ctx, dx_norm, ps[ffn_norm_].grad, dh2, x_mid_, ps[ffn_norm_].weight, rstd2_);
  add(ctx, dx, dx_norm);  // now the gradient of x_mid
  scratch_->reset(mark);
  attention_.backward(dx, x, rope.positions, rope.cos, rope.sin);
}

}  // namespace tmt
