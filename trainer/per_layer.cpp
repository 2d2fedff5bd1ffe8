#include "trainer/per_layer.h"

#include <cmath>
#include <string>

#include "kernels/reduce.h"

namespace tmt {
namespace {

// L of a parameter named `layers.<L>.…`, or -1.
int64_t layer_of(const std::string& name) {
  if (name.rfind("layers.", 0) != 0) return -1;
  const size_t end = name.find('.', 7);
  if (end == std::string::npos || end == 7) return -1;
  return std::stoll(name.substr(7, end - 7));
}

}  // namespace

LayerGradNorms layer_grad_norms(const ParamStore& params, const GradSync& sync, Communicator& world,
                                int64_t n_layers, const Context& ctx) {
  // [n_layers squares, the rest's]
  std::vector<double> sq(static_cast<size_t>(n_layers) + 1, 0.0);
  const auto& groups = params.groups();
  for (const Param& p : params.all()) {
    if (p.grad.data == nullptr) continue;
    for (size_t g = 0; g < groups.size(); ++g) {
      const Tensor& all = groups[g].grads;
      const size_t esize = dtype_size(all.dtype);
      const auto* base = static_cast<const std::byte*>(all.data);
      const auto* at = static_cast<const std::byte*>(p.grad.data);
      if (at < base || at >= base + static_cast<size_t>(all.numel()) * esize) continue;
      // The parameter's range of the group, and of it the part this rank's summed shard holds.
      const int64_t begin = (at - base) / static_cast<int64_t>(esize);
      const int64_t end = begin + p.grad.numel();
      const int64_t lo = std::max(begin, sync.shard_begin(g));
      const int64_t hi = std::min(end, sync.shard_begin(g) + sync.shard_len(g));
      if (lo < hi) {
        Tensor part = sync.summed(g);
        part.data = static_cast<std::byte*>(part.data) +
                    static_cast<size_t>(lo - sync.shard_begin(g)) * esize;
        part.shape = Shape{hi - lo};
        const auto copies = static_cast<double>(groups[g].tp_replicas *
                                                (sync.zero1() ? 1 : sync.replicas(g)->size()));
        const int64_t l = layer_of(p.spec.name);
        sq[l >= 0 && l < n_layers ? static_cast<size_t>(l) : sq.size() - 1] +=
            sum_squares(ctx, part) / copies;
      }
      break;
    }
  }
  world.all_reduce(
      Tensor{sq.data(), DType::kF64, Device::kCpu, Shape{static_cast<int64_t>(sq.size())}});
  LayerGradNorms n;
  for (int64_t l = 0; l < n_layers; ++l) n.layers.push_back(std::sqrt(sq[static_cast<size_t>(l)]));
  n.other = std::sqrt(sq.back());
  return n;
}

}  // namespace tmt
