#include "trainer/model/layer_env.h"

#include "kernels/copy.h"

namespace tmt {

size_t add_param(ParamStore& store, const std::string& name, Shape shape, ParamKind kind,
                 bool decay, ParamInit init, double init_std, int64_t tp_replicas) {
  return add_param_block(store, name, shape, {}, shape, kind, decay, init, init_std, tp_replicas);
}

size_t add_param_block(ParamStore& store, const std::string& name, Shape global,
                       const std::vector<int64_t>& offset, Shape local, ParamKind kind, bool decay,
                       ParamInit init, double init_std, int64_t tp_replicas) {
  ParamSpec spec;
  spec.name = name;
  spec.global_shape = global;
  spec.local_shape = local;
  for (size_t d = 0; d < offset.size(); ++d) spec.offset[d] = offset[d];
  spec.kind = kind;
  spec.decay = decay;
  spec.init = init;
  spec.init_std = init_std;
  spec.tp_replicas = tp_replicas;
  return store.add(std::move(spec));
}

void gather_sequence(const LayerEnv& env, const Tensor& full, const Tensor& chunk) {
  if (env.tp_size() == 1) return copy(env.ctx, full, chunk);
  env.tp->all_gather(full, chunk);
}

void scatter_sequence(const LayerEnv& env, const Tensor& chunk, const Tensor& full) {
  if (env.tp_size() == 1) return copy(env.ctx, chunk, full);
  env.tp->reduce_scatter(chunk, full);
}

}  // namespace tmt
