// Cross-entropy over a vocabulary split across the tensor-parallel group (Megatron's vocab-parallel
// cross entropy): each rank holds the logits of its vocabulary slice, and the full logits never
// exist on one rank.
//
//   losses[t]     = logsumexp_v logits[t, v] - logits[t, targets[t]]   (0 where targets[t] < 0)
//   dlogits[t, v] = grad_scale · (softmax(logits[t])_v - [v == targets[t]]), this rank's columns
//
// From the pieces of kernels/cross_entropy.h: the row max (all-reduced with max), then Σ exp and
// the target logit (all-reduced together), then the losses and this rank's columns of the
// gradient. With one rank it is the fused kernel (the same values up to rounding, in one pass).
//
//   logits:  [T, V/tp], columns [vocab_start, vocab_start + V/tp) of the vocabulary
//   dlogits: like logits; may alias it (the gradient overwrites the logits in place)
//   losses:  [T]; targets: [T] i32 global ids
//   stats:   f64 [3, T], the per-row statistics (scratch; unused with one rank)
// Written: losses, dlogits, stats. Collective over `tp` (null: one rank).
#pragma once

#include <cstdint>

#include "kernels/base/context.h"
#include "parallel/comm.h"

namespace tmt {

void vocab_parallel_cross_entropy(const Context& ctx, Communicator* tp, const Tensor& losses,
                                  const Tensor& dlogits, const Tensor& logits,
                                  const Tensor& targets, int64_t vocab_start, double grad_scale,
                                  const Tensor& stats);

}  // namespace tmt
