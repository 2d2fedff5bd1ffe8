#include "trainer/model/params.h"

#include <algorithm>
#include <cstring>

#include "kernels/base/rng.h"
#include "kernels/cast.h"
#include "kernels/copy.h"

namespace tmt {

size_t ParamStore::add(ParamSpec spec) {
  TMT_CHECK(groups_.empty(), "parameter {} declared after allocation", spec.name);
  if (spec.local_shape.rank() == 0) spec.local_shape = spec.global_shape;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].spec.name != spec.name) continue;
    const ParamSpec& had = params_[i].spec;
    TMT_CHECK(had.global_shape == spec.global_shape && had.local_shape == spec.local_shape &&
                  had.offset == spec.offset && had.kind == spec.kind,
              "parameter {} declared twice with different blocks", spec.name);
    return i;
  }
  TMT_CHECK(spec.local_shape.rank() == spec.global_shape.rank(),
            "{}: block rank differs from tensor rank", spec.name);
  for (int d = 0; d < spec.global_shape.rank(); ++d) {
    TMT_CHECK(spec.offset[static_cast<size_t>(d)] + spec.local_shape[d] <= spec.global_shape[d],
              "{}: block {} at dim {} leaves the tensor {}", spec.name, spec.local_shape.str(), d,
              spec.global_shape.str());
  }
  params_.push_back(Param{std::move(spec), {}, {}, {}});
  return params_.size() - 1;
}

void ParamStore::allocate(Device device, DType dtype, DType compute, int64_t group_multiple) {
  TMT_CHECK(groups_.empty() && !params_.empty(), "parameters allocated twice, or none declared");
  TMT_CHECK(group_multiple >= 1, "group multiple {}", group_multiple);
  TMT_CHECK(dtype_size(compute) <= dtype_size(dtype), "compute dtype {} wider than the values' {}",
            dtype_name(compute), dtype_name(dtype));
  compute_ = compute;
  // Room for the tensors, and for each group's padding.
  size_t total = 4 * params_.size() * Arena::footprint(dtype, {group_multiple});
  for (const Param& p : params_) total += Arena::footprint(dtype, p.spec.local_shape);
  values_ = Arena(device, total, "parameters");
  grads_ = Arena(device, total, "gradients");
  std::vector<int64_t> replication;  // the distinct tp_replicas values, ascending
  for (const Param& p : params_) {
    if (std::find(replication.begin(), replication.end(), p.spec.tp_replicas) == replication.end())
      replication.push_back(p.spec.tp_replicas);
  }
  std::sort(replication.begin(), replication.end());
  for (ParamKind kind : {ParamKind::kDense, ParamKind::kExpert}) {
    for (bool decay : {true, false}) {
      for (int64_t replicas : replication) add_group(kind, decay, replicas, dtype, group_multiple);
    }
  }
  for (Param& p : params_) {  // the buffers, in no group
    if (p.spec.trainable) continue;
    p.value = values_.alloc(dtype, p.spec.local_shape);
    p.grad = grads_.alloc(dtype, p.spec.local_shape);
    p.weight = p.value;
  }
  if (compute == dtype) {
    for (Param& p : params_) p.weight = p.value;
    for (ParamGroup& g : groups_) g.weights = g.values;
    return;
  }
  // The weights mirror the values element for element: the same flat offsets in a buffer of the
  // compute dtype (value offsets are multiples of kAlignment / dtype_size(dtype) elements, so the
  // weights stay aligned to kAlignment · dtype_size(compute) / dtype_size(dtype) bytes).
  const auto elements = static_cast<int64_t>(values_.used() / dtype_size(dtype));
  weights_ = Arena(device, Arena::footprint(compute, {elements}), "compute weights");
  const Tensor all = weights_.alloc(compute, {elements});
  const auto mirror = [&](const Tensor& value) {
    const auto offset = (static_cast<const std::byte*>(value.data) - values_.data()) /
                        static_cast<ptrdiff_t>(dtype_size(dtype));
    Tensor w = value;
    w.dtype = compute;
    w.data =
        static_cast<std::byte*>(all.data) + offset * static_cast<ptrdiff_t>(dtype_size(compute));
    return w;
  };
  for (Param& p : params_) p.weight = p.spec.trainable ? mirror(p.value) : p.value;
  for (ParamGroup& g : groups_) g.weights = mirror(g.values);
}

void ParamStore::sync_weights() {
  for (size_t i = 0; i < groups_.size(); ++i) sync_weights(i);
}

void ParamStore::sync_weights(size_t group) {
  const ParamGroup& g = groups_[group];
  if (g.weights.data != g.values.data) cast(Context{g.values.device, nullptr}, g.weights, g.values);
}

void ParamStore::add_group(ParamKind kind, bool decay, int64_t replicas, DType dtype,
                           int64_t group_multiple) {
  const size_t begin = values_.used();
  ParamGroup g{kind, decay, replicas, {}, {}, {}};
  for (Param& p : params_) {
    if (!p.spec.trainable || p.spec.kind != kind || p.spec.decay != decay ||
        p.spec.tp_replicas != replicas)
      continue;
    p.value = values_.alloc(dtype, p.spec.local_shape);
    p.grad = grads_.alloc(dtype, p.spec.local_shape);
    if (g.values.data == nullptr) {
      g.values = p.value;
      g.grads = p.grad;
    }
  }
  if (g.values.data == nullptr) return;
  // The group's flat range includes the alignment padding between its tensors: zeros that stay
  // zero under AdamW and add nothing to norms or all-reduces, and keep the group one tensor.
  auto n = static_cast<int64_t>((values_.used() - begin) / dtype_size(dtype));
  if (n % group_multiple != 0) {
    const int64_t pad = group_multiple - n % group_multiple;
    values_.alloc(dtype, {pad});
    grads_.alloc(dtype, {pad});
    n += pad;
  }
  g.values = g.values.view_flat(n);
  g.grads = g.grads.view_flat(n);
  groups_.push_back(g);
}

int64_t global_index(const ParamSpec& spec, int64_t local_flat) {
  const int rank = spec.global_shape.rank();
  int64_t global = 0;
  int64_t rest = local_flat;
  int64_t stride = 1;
  // Walk the dimensions from the last (fastest) to the first.
  for (int d = rank - 1; d >= 0; --d) {
    const int64_t local_coord = rest % spec.local_shape[d];
    rest /= spec.local_shape[d];
    global += (local_coord + spec.offset[static_cast<size_t>(d)]) * stride;
    stride *= spec.global_shape[d];
  }
  return global;
}

void ParamStore::initialize(uint64_t seed) {
  std::vector<std::byte> staging;  // a device parameter's values, drawn on the host
  for (Param& p : params_) {
    const bool host = p.value.device == Device::kCpu;
    if (!host) staging.resize(p.value.nbytes());
    void* out = host ? p.value.data : staging.data();
    const uint64_t stream = hash_name(p.spec.name);
    const int64_t n = p.value.numel();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const double v =
          p.spec.init == ParamInit::kOnes ? 1.0
          : p.spec.init == ParamInit::kZeros
              ? 0.0
              : p.spec.init_std *
                    random_normal(seed, stream, static_cast<uint64_t>(global_index(p.spec, i)));
      store_element(p.value.dtype, out, static_cast<size_t>(i), v);
    }
    if (!host) copy_from_host(Context{p.value.device, nullptr}, p.value, staging.data());
  }
  sync_weights();
}

void ParamStore::zero_grads() {
  for (const ParamGroup& g : groups_) zero(Context{g.grads.device, nullptr}, g.grads);
}

int64_t ParamStore::numel() const {
  int64_t n = 0;
  for (const Param& p : params_) n += p.value.numel();
  return n;
}

const Param* ParamStore::find(const std::string& name) const {
  for (const Param& p : params_) {
    if (p.spec.name == name) return &p;
  }
  return nullptr;
}

}  // namespace tmt
