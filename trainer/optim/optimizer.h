// AdamW over the parameter groups, optionally sharded (ZeRO-1): the optimizer only updates; the
// gradients it reads were made whole by parallel/grad_sync.h.
//
// Decoupled weight decay (Loshchilov & Hutter) applies to the decayed groups — every weight matrix:
// attention and FFN projections, experts, router, embedding and LM head — and not to RMSNorm
// weights. The moments m and v are fp32, one flat tensor per parameter group. AdamW updates the
// master weights (ParamStore values, f32) from the f32 gradients; in mixed precision the model's
// bf16 weights are then refreshed from them (ParamStore::sync_weights).
//
// Replicas: dense parameters are replicated over the data-parallel group, expert parameters over
// the expert-data-parallel group. Without zero1 each rank updates the whole group from the
// all-reduced gradient. With parallel.zero1 (the distributed optimizer) rank i of the group holds
// m and v for shard i only (GradSync's shard, whose summed gradient it was given), updates its
// shard of the parameters and all-gathers them back — the same update, with 1/group-size of the
// optimizer state per rank.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/base/arena.h"
#include "kernels/base/context.h"
#include "parallel/grad_sync.h"
#include "trainer/model/params.h"
#include "trainer/recipe/recipe.h"

namespace tmt {

// The factor that brings a gradient of norm `norm` down to `clip` (1 when clip is 0 or not
// exceeded).
double clip_factor(double norm, double clip);

class Optimizer {
 public:
  // `grads` holds one bucket per group of `params`, in order; both must outlive the optimizer.
  Optimizer(const Context& ctx, ParamStore& params, const OptimizerConfig& config,
            const GradSync& grads);

  // One AdamW step at learning rate lr, the summed gradients multiplied by grad_scale first.
  void step(double lr, double grad_scale);
  int64_t steps_taken() const { return steps_; }
  size_t state_bytes() const { return state_.capacity(); }  // m and v over this rank's shard

  // Checkpoints: the moments of parameter group i whole ([group numel] f32 each, whatever zero1
  // shards; on the optimizer's device without zero1, on the host with it), and back from host
  // tensors. whole_moments returns the optimizer's own tensors without zero1; under
  // zero1 it all-gathers the shards into m_buf and v_buf (collective over the group's replicas).
  std::pair<Tensor, Tensor> whole_moments(size_t group, std::vector<float>& m_buf,
                                          std::vector<float>& v_buf);
  void import_moments(size_t group, const Tensor& m, const Tensor& v, int64_t steps_taken);

  struct GroupState {
    Tensor m, v;  // [GradSync::shard_len] f32
  };
  const std::vector<GroupState>& groups() const { return groups_; }

 private:
  // This rank's part of a group-sized flat tensor.
  Tensor shard(const Tensor& flat, size_t group) const;

  Context ctx_;
  ParamStore* params_;
  OptimizerConfig config_;
  const GradSync* grads_;
  Arena state_;
  std::vector<GroupState> groups_;
  int64_t steps_ = 0;
};

}  // namespace tmt
