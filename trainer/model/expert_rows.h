// The memory of the rows that a rank's experts receive.
//
// How many rows an MoE layer's experts receive is known only once the router has run: with
// balanced routing a rank of the etp x ep expert group receives etp·T·K rows a micro-batch (the
// group's ep·etp·T·K assignments spread over its ep expert blocks, each block's rows going to its
// etp ranks), but dropless routing may send one rank every assignment of the group, ep times
// that. Sizing every layer and every in-flight micro-batch for that worst case does not fit a
// real model on a GPU (Mixtral 8x7B at tp1 pp4 ep8 would need ~227 GiB on stage 0), so:
//
// - The plan is the balanced load per MoE layer, etp·T·K rows; with a capacity factor c the
//   capacity bound instead (each source rank sends an expert at most ⌈c·T·K/E⌉ rows), which is
//   exact, so such a run never grows.
// - What backward needs of the expert side (the experts' inputs, their gate/up projections and
//   SwiGLU activations) is kept in one stack per in-flight micro-batch, planned for all of the
//   stage's MoE layers together: a layer that receives more than its share takes what the others
//   leave. The stack is emptied when its micro-batch's next forward starts. Under full
//   recomputation (model.h) there is one stack, planned for the hungriest MoE layer and emptied
//   before each MoE layer's forward (and its rerun in backward).
// - The rest (the rows as received, the experts' outputs, backward's gradients) is scratch shared
//   by every MoE layer, planned for one layer's balanced load.
// - A micro-batch that needs more than planned grows the stack (a segment is added; the next
//   forward merges the segments into one) or the scratch (reallocated larger), and keeps the
//   growth for the rest of the run. The trainer says on the console when the busiest rank's
//   expert rows grew (trainer.cpp). Dropless stays dropless: no token is ever dropped for want of
//   memory.
#pragma once

#include <string>
#include <vector>

#include "kernels/base/arena.h"

namespace tmt {

// A stack of memory that grows: allocations go on top, reset() empties it. An allocation that
// does not fit adds a segment (at least half the capacity again, so growth is geometric);
// reset() merges the segments into one. Memory is not zeroed (on the CPU it starts as NaN, like
// the scratch arena's): every tensor taken from it must be written before it is read.
class GrowingStack {
 public:
  GrowingStack() = default;
  GrowingStack(Device device, size_t planned_bytes, std::string name);

  Tensor alloc(DType dtype, Shape shape);
  void reset();
  size_t planned() const { return planned_; }
  size_t capacity() const;

 private:
  Device device_ = Device::kCpu;
  size_t planned_ = 0;
  std::string name_;
  std::vector<Arena> segments_;
  size_t current_ = 0;  // the segment allocations go to
};

// The stacks of one pipeline stage's MoE layers: one per in-flight micro-batch (of each model
// chunk) for the kept rows, one scratch shared by all.
class ExpertRows {
 public:
  ExpertRows() = default;
  // kept_bytes: per slot, what one micro-batch's MoE layers (of the slot's model chunk) keep at
  // the planned load; scratch_bytes: what the hungriest pass of one layer takes at its planned
  // load.
  ExpertRows(Device device, const std::vector<size_t>& kept_bytes, size_t scratch_bytes);

  int64_t slots() const { return static_cast<int64_t>(kept_.size()); }
  GrowingStack& kept(int64_t slot) { return kept_[static_cast<size_t>(slot)]; }
  GrowingStack& scratch() { return scratch_; }
  size_t planned_bytes() const;   // as planned, over every slot and the scratch
  size_t capacity_bytes() const;  // as now, growth included

 private:
  std::vector<GrowingStack> kept_;
  GrowingStack scratch_;
};

}  // namespace tmt
