#include "trainer/optim/optimizer.h"

#include <cmath>

#include "kernels/adamw.h"
#include "kernels/copy.h"
#include "kernels/reduce.h"

namespace tmt {

double clip_factor(double norm, double clip) {
  if (clip <= 0.0 || !(norm > clip)) return 1.0;
  return clip / norm;
}

Optimizer::Optimizer(const Context& ctx, ParamStore& params, const OptimizerConfig& config,
                     ParallelEnv& env, bool zero1)
    : ctx_(ctx), params_(&params), config_(config), env_(&env), zero1_(zero1) {
  size_t bytes = 0;
  for (const ParamGroup& pg : params.groups()) {
    GroupState g;
    g.replicas = pg.kind == ParamKind::kDense ? env.dp.get() : env.edp.get();
    const int64_t n = pg.values.numel();
    if (zero1) {
      const int64_t s = g.replicas->size();
      TMT_CHECK(n % s == 0, "parameter group of {} elements does not split over {} ranks", n, s);
      g.shard_len = n / s;
      g.shard_begin = g.replicas->rank() * g.shard_len;
    } else {
      g.shard_len = n;
    }
    bytes += (zero1 ? 3 : 2) * Arena::footprint(DType::kF32, {g.shard_len});
    groups_.push_back(g);
  }
  state_ = Arena(ctx.device, bytes, "optimizer state");
  for (GroupState& g : groups_) {
    g.m = state_.alloc(DType::kF32, {g.shard_len});
    g.v = state_.alloc(DType::kF32, {g.shard_len});
    if (zero1) g.grad_shard = state_.alloc(DType::kF32, {g.shard_len});
  }
}

Tensor Optimizer::shard(const Tensor& flat, const GroupState& g) const {
  Tensor t = flat;
  t.data = static_cast<std::byte*>(flat.data) +
           static_cast<size_t>(g.shard_begin) * dtype_size(flat.dtype);
  t.shape = Shape{g.shard_len};
  return t;
}

double Optimizer::reduce_gradients() {
  const auto& pgroups = params_->groups();
  // Each rank adds its share of the squared norm so that the sum over the world counts every
  // parameter once: a group's square is divided by the ranks that hold the same values — its TP
  // replicas, and (without zero1, where the shards are disjoint) its data-parallel replicas.
  double sq = 0;
  for (size_t i = 0; i < groups_.size(); ++i) {
    const GroupState& g = groups_[i];
    const auto copies =
        static_cast<double>(pgroups[i].tp_replicas * (zero1_ ? 1 : g.replicas->size()));
    if (zero1_) {
      g.replicas->reduce_scatter(g.grad_shard, pgroups[i].grads);
      sq += sum_squares(ctx_, g.grad_shard) / copies;
    } else {
      g.replicas->all_reduce(pgroups[i].grads);
      sq += sum_squares(ctx_, pgroups[i].grads) / copies;
    }
  }
  return std::sqrt(env_->world->all_reduce_scalar(sq));
}

std::pair<Tensor, Tensor> Optimizer::whole_moments(size_t group, std::vector<float>& m_buf,
                                                   std::vector<float>& v_buf) {
  const GroupState& g = groups_[group];
  if (!zero1_) return {g.m, g.v};
  const int64_t n = g.shard_len * g.replicas->size();
  m_buf.resize(static_cast<size_t>(n));
  v_buf.resize(static_cast<size_t>(n));
  const Tensor m{m_buf.data(), DType::kF32, Device::kCpu, Shape{n}};
  const Tensor v{v_buf.data(), DType::kF32, Device::kCpu, Shape{n}};
  g.replicas->all_gather(m, g.m);
  g.replicas->all_gather(v, g.v);
  return {m, v};
}

void Optimizer::import_moments(size_t group, const Tensor& m, const Tensor& v,
                               int64_t steps_taken) {
  TMT_CHECK(m.device == Device::kCpu && v.device == Device::kCpu,
            "import_moments: {} and {} must be host tensors", m.str(), v.str());
  const GroupState& g = groups_[group];
  copy_from_host(ctx_, g.m, shard(m, g).data);
  copy_from_host(ctx_, g.v, shard(v, g).data);
  steps_ = steps_taken;
}

void Optimizer::step(double lr, double grad_scale) {
  ++steps_;
  const auto& pgroups = params_->groups();
  for (size_t i = 0; i < groups_.size(); ++i) {
    const GroupState& g = groups_[i];
    AdamWParams p;
    p.lr = lr;
    p.beta1 = config_.beta1;
    p.beta2 = config_.beta2;
    p.eps = config_.eps;
    p.weight_decay = pgroups[i].decay ? config_.weight_decay : 0.0;
    p.step = steps_;
    p.grad_scale = grad_scale;
    if (zero1_) {
      adamw_step(ctx_, shard(pgroups[i].values, g), g.grad_shard, g.m, g.v, p);
      g.replicas->all_gather(pgroups[i].values, shard(pgroups[i].values, g));
    } else {
      adamw_step(ctx_, pgroups[i].values, pgroups[i].grads, g.m, g.v, p);
    }
  }
  params_->sync_weights();  // mixed precision: the model's bf16 copy of the new master weights
}

}  // namespace tmt
