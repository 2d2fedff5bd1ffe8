#include "trainer/model/block.h"

#include "kernels/copy.h"
#include "kernels/reduce.h"
#include "kernels/rmsnorm.h"

namespace tmt {

Block::Block(const LayerEnv& env, int64_t layer, ParamStore& store) : env_(env), store_(&store) {
  const ModelConfig& m = *env.model;
  if (m.is_mla()) {
    mla_ = std::make_unique<MlaLayer>(env, layer, store);
  } else {
    gqa_ = std::make_unique<AttentionLayer>(env, layer, store);
  }
  const std::string p = "layers." + std::to_string(layer) + ".";
  ffn_norm_ = store.add({.name = p + "ffn_norm",
                         .global_shape = {m.d_model},
                         .decay = false,
                         .init = ParamInit::kOnes,
                         .tp_replicas = env.tp_size()});
  if (m.moe && m.is_moe_layer(layer)) {
    moe_ = std::make_unique<MoeLayer>(env, layer, store);
    if (m.moe->n_shared_experts > 0) {
      shared_ = std::make_unique<FfnLayer>(
          env, p + "shared.", m.moe->n_shared_experts * m.moe->shared_expert_ffn_hidden, store);
    }
  } else {
    dense_ = std::make_unique<FfnLayer>(env, p + "ffn.", m.ffn_hidden, store);
  }
  ffn_ = dense_ ? dense_.get() : shared_.get();
}

void Block::allocate(Arena& acts, Arena& scratch) {
  const int64_t tl = env_.local_tokens();
  const int64_t d = env_.model->d_model;
  if (mla_) {
    mla_->allocate(acts, scratch);
  } else {
    gqa_->allocate(acts, scratch);
  }
  x_mid_ = acts.alloc(env_.dtype, {tl, d});
  if (!env_.selective()) kept_ = normed(acts);
  rstd2_ = acts.alloc(env_.stat_dtype(), {tl});
  scratch_ = &scratch;
  // Each pass holds its temporaries while the FFN's or the MoE's backward takes its own on top.
  const size_t mark = scratch.mark();
  normed_for_pass();
  forward_temps(scratch);
  scratch.reset(mark);
  normed_for_pass();
  backward_temps(scratch, env_.residual_stand_in());
  if (dense_) dense_->allocate(acts, scratch);
  if (moe_) moe_->allocate(acts, scratch);
  if (shared_) shared_->allocate(acts, scratch);
  scratch.reset(mark);
}

Block::Normed Block::normed(Arena& arena) const {
  Normed n;
  n.h2 = arena.alloc(env_.dtype, {env_.local_tokens(), env_.model->d_model});
  n.h2_full = ffn_ != nullptr ? env_.sp.gathered(arena, n.h2) : n.h2;
  return n;
}

Block::ForwardTemps Block::forward_temps(Arena& scratch) const {
  if (ffn_ == nullptr) return {};
  const int64_t d = env_.model->d_model;
  return {env_.sp.partial(scratch, env_.dtype, d), env_.sp.received(scratch, env_.dtype, d)};
}

Block::BackwardTemps Block::backward_temps(Arena& scratch, const Tensor& dx) const {
  const int64_t tl = env_.local_tokens(), d = env_.model->d_model;
  BackwardTemps g;
  g.dh2 = scratch.alloc(env_.dtype, {tl, d});
  g.dx_norm = scratch.alloc(env_.dtype, {tl, d});
  if (ffn_ != nullptr) {
    g.dy_full = env_.sp.gathered(scratch, dx);
    g.partial = env_.sp.partial(scratch, env_.dtype, d);
    g.received = env_.sp.received(scratch, env_.dtype, d);
  }
  return g;
}

MoeStats Block::forward(const Tensor& x_out, const Tensor& x, const Rope& rope, double aux_weight) {
  const ParamStore& ps = *store_;
  const Context& ctx = env_.ctx;
  if (mla_) {
    mla_->forward(x_mid_, x, rope);
  } else {
    gqa_->forward(x_mid_, x, rope);
  }
  const size_t mark = scratch_->mark();
  const Normed n = normed_for_pass();
  rmsnorm_fwd(ctx, n.h2, rstd2_, x_mid_, ps[ffn_norm_].weight, env_.model->norm_eps);
  copy(ctx, x_out, x_mid_);
  MoeStats stats;
  if (moe_) stats = moe_->forward(x_out, n.h2, aux_weight);
  if (ffn_ != nullptr) {
    const ForwardTemps f = forward_temps(*scratch_);
    env_.sp.gather(n.h2_full, n.h2);
    env_.sp.reduce_scatter_add(ctx, x_out, f.partial, f.received, [&](const Tensor& out, bool acc) {
      ffn_->forward(out, n.h2_full, acc);
    });
  }
  scratch_->reset(mark);
  return stats;
}

void Block::backward(const Tensor& dx, const Tensor& x, const Rope& rope) {
  ParamStore& ps = *store_;
  const Context& ctx = env_.ctx;
  const size_t mark = scratch_->mark();
  const Normed n = normed_for_pass();
  if (env_.selective()) {  // the same operations on the same inputs: the same values
    rmsnorm_fwd(ctx, n.h2, rstd2_, x_mid_, ps[ffn_norm_].weight, env_.model->norm_eps);
    if (ffn_ != nullptr) env_.sp.gather(n.h2_full, n.h2);
  }
  const BackwardTemps g = backward_temps(*scratch_, dx);
  if (moe_) moe_->backward(g.dh2, dx, n.h2);  // written; the shared experts add to it
  if (ffn_ != nullptr) {
    env_.sp.gather(g.dy_full, dx);
    const auto ffn_backward = [&](const Tensor& out, bool acc) {
      ffn_->backward(out, g.dy_full, n.h2_full, acc);
    };
    if (moe_) {
      env_.sp.reduce_scatter_add(ctx, g.dh2, g.partial, g.received, ffn_backward);
    } else {
      env_.sp.reduce_scatter(g.dh2, g.partial,
                             [&](const Tensor& out) { ffn_backward(out, false); });
    }
  }
  rmsnorm_bwd(ctx, g.dx_norm, ps[ffn_norm_].grad, g.dh2, x_mid_, ps[ffn_norm_].weight, rstd2_);
  add(ctx, dx, g.dx_norm);  // now the gradient of x_mid
  scratch_->reset(mark);
  if (mla_) {
    mla_->backward(dx, x, rope);
  } else {
    gqa_->backward(dx, x, rope);
  }
}

}  // namespace tmt
