// cross_entropy: softmax cross-entropy over the vocabulary, fused with its gradient.
//
// Fused, whole vocabulary on this rank (logits [T, V]):
//   lse[t]        = log(sum_v exp(logits[t, v]))         (computed with the row max taken out)
//   losses[t]     = lse[t] - logits[t, targets[t]]
//   dlogits[t, v] = grad_scale * (exp(logits[t, v] - lse[t]) - [v == targets[t]])
// so dlogits = grad_scale * d losses[t] / d logits[t, :]. A target < 0 is ignored: its loss and its
// gradient row are 0. A target >= V is a broken invariant (fatal).
//   logits, dlogits: [T, V] f32|f64, one dtype. dlogits may alias logits (the gradient overwrites
//                    the logits in place); pass Tensor{} as dlogits to compute the losses only.
//   losses:          [T] f32|f64 (need not match the logits)
//   targets:         [T] i32
//   CUDA: logits, dlogits f32|bf16, all arithmetic in fp32; losses and statistics f32|f64. A
//   target >= V traps the kernel (fatal at the next CUDA call).
// Written: losses, dlogits.
//
// Vocab-parallel pieces. Each rank holds logits [T, V_local] for the vocabulary slice
// [vocab_start, vocab_start + V_local); targets are global ids. One step of vocab-parallel
// cross-entropy is
//   cross_entropy_row_max      -> all-reduce(max) over the vocab shards  -> row_max
//   cross_entropy_sum_exp      -> all-reduce(sum)                        -> sum_exp
//   cross_entropy_target_logit -> all-reduce(sum)                        -> target_logit
//   cross_entropy_loss         (losses, identical on every shard)
//   cross_entropy_grad         (this shard's columns of dlogits)
// and matches the fused op on the gathered logits up to rounding. The per-row statistics row_max,
// sum_exp, target_logit are [T] f32|f64 (f64 recommended), all written:
//   row_max[t]      = max_v logits[t, v]                          (-inf when V_local = 0)
//   sum_exp[t]      = sum_v exp(logits[t, v] - row_max[t])        (row_max: the global max)
//   target_logit[t] = logits[t, targets[t] - vocab_start] if that column is on this shard, else 0
//   losses[t]       = log(sum_exp[t]) + row_max[t] - target_logit[t], or 0 when targets[t] < 0
//   dlogits[t, v]   = grad_scale * (exp(logits[t, v] - row_max[t]) / sum_exp[t]
//                                   - [v + vocab_start == targets[t]]),  0 rows when targets[t] < 0
// cross_entropy_grad's dlogits may alias its logits, as in the fused op.
#pragma once

#include <cstdint>

#include "kernels/base/context.h"

namespace tmt {

void cross_entropy(const Context& ctx, const Tensor& losses, const Tensor& dlogits,
                   const Tensor& logits, const Tensor& targets, double grad_scale);

void cross_entropy_row_max(const Context& ctx, const Tensor& row_max, const Tensor& logits);
void cross_entropy_sum_exp(const Context& ctx, const Tensor& sum_exp, const Tensor& logits,
                           const Tensor& row_max);
void cross_entropy_target_logit(const Context& ctx, const Tensor& target_logit,
                                const Tensor& logits, const Tensor& targets, int64_t vocab_start);
void cross_entropy_loss(const Context& ctx, const Tensor& losses, const Tensor& row_max,
                        const Tensor& sum_exp, const Tensor& target_logit, const Tensor& targets);
void cross_entropy_grad(const Context& ctx, const Tensor& dlogits, const Tensor& logits,
                        const Tensor& targets, const Tensor& row_max, const Tensor& sum_exp,
                        int64_t vocab_start, double grad_scale);

}  // namespace tmt
