#include "trainer/optim/optimizer.h"

#include <cmath>

#include "kernels/adamw.h"
#include "kernels/copy.h"

namespace tmt {

double clip_factor(double norm, double clip) {
  if (clip <= 0.0 || !(norm > clip)) return 1.0;
  return clip / norm;
}

Optimizer::Optimizer(const Context& ctx, ParamStore& params, const OptimizerConfig& config,
                     const GradSync& grads)
    : ctx_(ctx), params_(&params), config_(config), grads_(&grads) {
  TMT_CHECK(grads.size() == params.groups().size(), "{} gradient buckets for {} parameter groups",
            grads.size(), params.groups().size());
  size_t bytes = 0;
  for (size_t i = 0; i < grads.size(); ++i)
    bytes += 2 * Arena::footprint(DType::kF32, {grads.shard_len(i)});
  state_ = Arena(ctx.device, bytes, "optimizer state");
  for (size_t i = 0; i < grads.size(); ++i) {
    GroupState g;
    g.m = state_.alloc(DType::kF32, {grads.shard_len(i)});
    g.v = state_.alloc(DType::kF32, {grads.shard_len(i)});
    groups_.push_back(g);
  }
}

Tensor Optimizer::shard(const Tensor& flat, size_t group) const {
  Tensor t = flat;
  t.data = static_cast<std::byte*>(flat.data) +
           static_cast<size_t>(grads_->shard_begin(group)) * dtype_size(flat.dtype);
  t.shape = Shape{grads_->shard_len(group)};
  return t;
}

std::pair<Tensor, Tensor> Optimizer::whole_moments(size_t group, std::vector<float>& m_buf,
                                                   std::vector<float>& v_buf) {
  const GroupState& g = groups_[group];
  if (!grads_->zero1()) return {g.m, g.v};
  Communicator* replicas = grads_->replicas(group);
  const int64_t n = grads_->shard_len(group) * replicas->size();
  m_buf.resize(static_cast<size_t>(n));
  v_buf.resize(static_cast<size_t>(n));
  const Tensor m{m_buf.data(), DType::kF32, Device::kCpu, Shape{n}};
  const Tensor v{v_buf.data(), DType::kF32, Device::kCpu, Shape{n}};
  replicas->all_gather(m, g.m);
  replicas->all_gather(v, g.v);
  return {m, v};
}

void Optimizer::import_moments(size_t group, const Tensor& m, const Tensor& v,
                               int64_t steps_taken) {
  TMT_CHECK(m.device == Device::kCpu && v.device == Device::kCpu,
            "import_moments: {} and {} must be host tensors", m.str(), v.str());
  const GroupState& g = groups_[group];
  copy_from_host(ctx_, g.m, shard(m, group).data);
  copy_from_host(ctx_, g.v, shard(v, group).data);
  steps_ = steps_taken;
}

void Optimizer::step(double lr, double grad_scale) {
  ++steps_;
  const auto& pgroups = params_->groups();
  for (size_t i = 0; i < groups_.size(); ++i) {
    const GroupState& g = groups_[i];
    const AdamWParams p{.lr = lr,
                        .beta1 = config_.beta1,
                        .beta2 = config_.beta2,
                        .eps = config_.eps,
                        .weight_decay = pgroups[i].decay ? config_.weight_decay : 0.0,
                        .step = steps_,
                        .grad_scale = grad_scale};
    // Without zero1 the shard is the whole group, and the summed gradient its own gradients;
    // AdamW then also writes the model's bf16 copy of the new master weights (mixed precision).
    // With zero1 the copy is cast from the gathered masters.
    const ParamGroup& pg = pgroups[i];
    const bool mixed = pg.weights.data != pg.values.data;
    adamw_step(ctx_, shard(pg.values, i), grads_->summed(i), g.m, g.v, p,
               mixed && !grads_->zero1() ? pg.weights : Tensor{});
    if (grads_->zero1()) {
      grads_->replicas(i)->all_gather(pg.values, shard(pg.values, i));
      params_->sync_weights(i);
    }
  }
}

}  // namespace tmt
