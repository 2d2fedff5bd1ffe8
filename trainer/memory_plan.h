// What a rank of a recipe's layout holds in device memory, by kind, computed by the code that
// allocates it: the stage's Model is built with ModelRun::dry (arenas that reserve address space
// only, Arena::DryRun) over shape-only groups (parallel/shape_only_comm.h), so any model at any
// layout is sized on any machine. `tramontane check RECIPE --memory` prints it.
#pragma once

#include <cstddef>
#include <vector>

#include "parallel/comm.h"
#include "trainer/model/model.h"
#include "trainer/recipe/recipe.h"

namespace tmt {

// The model of pipeline stage `stage` as the trainer builds it (tp, experts, cp: its groups).
ModelShard model_shard_of(const Recipe& recipe, int64_t stage, Communicator* tp,
                          Communicator* experts, Communicator* cp = nullptr);
ModelRun model_run_of(const Recipe& recipe);

struct StageMemory {
  int64_t stage = 0;
  std::vector<StageRange> layers;  // a range per model chunk (one unless parallel.vpp > 1)
  int64_t in_flight = 0;       // micro-batches whose activations it keeps, summed over its chunks
  size_t weights = 0;          // master weights (f32; f64 in gradient checks)
  size_t grads = 0;            // their gradients, same dtype
  size_t compute_weights = 0;  // the bf16 copy (0 when the model computes in its master dtype)
  size_t grad_shards = 0;      // ZeRO-1: the reduce-scattered gradient shards
  size_t optimizer = 0;        // AdamW's m and v (f32), over this rank's shard
  size_t activations = 0;      // kept for backward, every in-flight micro-batch
  size_t scratch = 0;          // temporaries shared by every layer
  size_t expert_rows = 0;      // the MoE layers' expert-side rows as planned (expert_rows.h)
  size_t workspace = 0;        // the ops' device workspace (0 on the CPU)
  // Of weights, grads and compute_weights: the routed experts' part (the rest is dense).
  size_t expert_params = 0;
  // Whether workspace is known: on CUDA cuDNN's attention says its workspace only once it has
  // built its graph, which needs a GPU; without one it counts 0 here.
  bool workspace_known = true;
  size_t total() const;
};

// One entry per pipeline stage, for its rank at tp, etp and ep coordinate 0 (the others of a stage
// hold the same amounts). `recipe` must be resolved for its world (resolve_layout).
std::vector<StageMemory> plan_memory(const Recipe& recipe);

}  // namespace tmt
