// The optimizer side of a step: gradient reduction over replicas, the global gradient norm, and
// AdamW, optionally sharded (ZeRO-1).
//
// Decoupled weight decay (Loshchilov & Hutter) applies to the decayed groups — every weight matrix:
// attention and FFN projections, experts, router, embedding and LM head — and not to RMSNorm
// weights. The moments m and v are fp32, one flat tensor per parameter group. AdamW updates the
// master weights (ParamStore values, f32) from the f32 gradients; in mixed precision the model's
// bf16 weights are then refreshed from them (ParamStore::sync_weights).
//
// Replicas: dense parameters are replicated over the data-parallel group, expert parameters over
// the expert-data-parallel group. Without zero1 each group's gradient is all-reduced there and
// every rank updates the whole group. With parallel.zero1 (the distributed optimizer) the gradient
// is reduce-scattered instead: rank i of the group keeps shard i of the summed gradient, holds m
// and v for that shard only, updates its shard of the parameters and all-gathers them back — the
// same update, with 1/group-size of the optimizer state per rank.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/base/arena.h"
#include "kernels/base/context.h"
#include "parallel/groups.h"
#include "trainer/model/params.h"
#include "trainer/recipe/recipe.h"

namespace tmt {

// The factor that brings a gradient of norm `norm` down to `clip` (1 when clip is 0 or not
// exceeded).
double clip_factor(double norm, double clip);

class Optimizer {
 public:
  // With zero1, every group of `params` must split evenly over its replica group (see
  // ParamStore::allocate's group_multiple).
  Optimizer(const Context& ctx, ParamStore& params, const OptimizerConfig& config, ParallelEnv& env,
            bool zero1);

  // Sums the gradients over their replicas and returns the global gradient norm: every parameter
  // counted once, whichever ranks hold it.
  double reduce_gradients();
  // One AdamW step at learning rate lr, the summed gradients multiplied by grad_scale first.
  void step(double lr, double grad_scale);
  int64_t steps_taken() const { return steps_; }

  // Checkpoints: the moments of parameter group i whole ([group numel] f32 each, whatever zero1
  // shards; on the optimizer's device without zero1, on the host with it), and back from host
  // tensors. whole_moments returns the optimizer's own tensors without zero1; under
  // zero1 it all-gathers the shards into m_buf and v_buf (collective over the group's replicas).
  std::pair<Tensor, Tensor> whole_moments(size_t group, std::vector<float>& m_buf,
                                          std::vector<float>& v_buf);
  void import_moments(size_t group, const Tensor& m, const Tensor& v, int64_t steps_taken);

  struct GroupState {
    Communicator* replicas = nullptr;  // DP for dense groups, EDP for expert groups
    int64_t shard_begin = 0;           // this rank's part of the group: all of it without zero1
    int64_t shard_len = 0;
    Tensor m, v;        // [shard_len] f32
    Tensor grad_shard;  // zero1: the reduce-scattered gradient [shard_len]
  };
  const std::vector<GroupState>& groups() const { return groups_; }

 private:
  Tensor shard(const Tensor& flat, const GroupState& g) const;

  Context ctx_;
  ParamStore* params_;
  OptimizerConfig config_;
  ParallelEnv* env_;
  bool zero1_;
  Arena state_;
  std::vector<GroupState> groups_;
  int64_t steps_ = 0;
};

}  // namespace tmt
