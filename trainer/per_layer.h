// Per-layer statistics of a step (log.per_layer), the same at every parallel layout.
//
// Gradient norms: for each block L, the L2 norm of the summed gradients of all its parameters
// (`layers.<L>.*`), and one more for the rest (the embedding, the final norm, the head). Each
// rank adds the squares of its part of every parameter's summed gradient (GradSync's shards under
// ZeRO-1) divided by the ranks that hold the same values, as GradSync's global norm does, and the
// sums are added over the world: so the values do not depend on the layout, every rank gets them,
// and their squares add up to the global norm's square.
//
// Expert loads: for each MoE layer, the tokens each expert received over the step (its
// assignments, top_k per token), summed over the ranks that routed them; each layer's loads add up
// to the step's tokens times model.moe.top_k.
#pragma once

#include <cstdint>
#include <vector>

#include "parallel/comm.h"
#include "parallel/grad_sync.h"
#include "trainer/model/params.h"

namespace tmt {

struct LayerGradNorms {
  std::vector<double> layers;  // [n_layers]: block L's norm (every block, on every rank)
  double other = 0;            // the parameters outside the blocks
};

// Collective over `world`, after GradSync::finish. GradSync's buckets must be the parameter
// groups in order (one bucket per group).
LayerGradNorms layer_grad_norms(const ParamStore& params, const GradSync& sync, Communicator& world,
                                int64_t n_layers, const Context& ctx);

}  // namespace tmt
