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
                        ParamInit::kOnes, 0.0);
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
  const int64_t t = env_.tokens();
  const int64_t d = env_.recipe->model.d_model;
  attention_.allocate(acts, scratch);
  x_mid_ = acts.alloc(env_.dtype, {t, d});
  h2_ = acts.alloc(env_.dtype, {t, d});
  rstd2_ = acts.alloc(env_.dtype, {t});
  // backward() holds dh2 and dx_norm while the FFN's backward takes its own scratch on top.
  scratch_ = &scratch;
  const size_t mark = scratch.mark();
  scratch.alloc(env_.dtype, {t, d});  // dh2
  scratch.alloc(env_.dtype, {t, d});  // dx_norm
  if (dense_) dense_->allocate(acts, scratch);
  if (moe_) moe_->allocate(acts, scratch);
  if (shared_) shared_->allocate(acts, scratch);
  scratch.reset(mark);
}

MoeStats Block::forward(const Tensor& x_out, const Tensor& x, const Rope& rope, double aux_weight) {
  const ParamStore& ps = *store_;
  attention_.forward(x_mid_, x, rope.positions, rope.cos, rope.sin);
  rmsnorm_fwd(env_.ctx, h2_, rstd2_, x_mid_, ps[ffn_norm_].value, env_.recipe->model.norm_eps);
  copy(env_.ctx, x_out, x_mid_);
  MoeStats stats;
  if (dense_) dense_->forward(x_out, h2_);
  if (moe_) stats = moe_->forward(x_out, h2_, aux_weight);
  if (shared_) shared_->forward(x_out, h2_);
  return stats;
}

void Block::backward(const Tensor& dx, const Tensor& x, const Rope& rope) {
  ParamStore& ps = *store_;
  const int64_t t = env_.tokens();
  const int64_t d = env_.recipe->model.d_model;
  const size_t mark = scratch_->mark();
  const Tensor dh2 = scratch_->alloc(env_.dtype, {t, d});
  const Tensor dx_norm = scratch_->alloc(env_.dtype, {t, d});
  if (dense_) dense_->backward(dh2, dx, h2_, false);
  if (moe_) moe_->backward(dh2, dx, h2_);
  if (shared_) shared_->backward(dh2, dx, h2_, true);
  rmsnorm_bwd(env_.ctx, dx_norm, ps[ffn_norm_].grad, dh2, x_mid_, ps[ffn_norm_].value, rstd2_);
  add(env_.ctx, dx, dx_norm);  // now the gradient of x_mid
  scratch_->reset(mark);
  attention_.backward(dx, x, rope.positions, rope.cos, rope.sin);
}

}  // namespace tmt
