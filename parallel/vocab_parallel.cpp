#include "parallel/vocab_parallel.h"

#include "kernels/cross_entropy.h"

namespace tmt {

void vocab_parallel_cross_entropy(const Context& ctx, Communicator* tp, const Tensor& losses,
                                  const Tensor& dlogits, const Tensor& logits,
                                  const Tensor& targets, int64_t vocab_start, double grad_scale,
                                  const Tensor& stats) {
  if (tp == nullptr || tp->size() == 1) {
    return cross_entropy(ctx, losses, dlogits, logits, targets, grad_scale);
  }
  const int64_t t = logits.size(0);
  const Tensor row_max = stats.slice(0, 1).view({t});
  const Tensor sums = stats.slice(1, 3);  // Σ exp and the target logit, reduced together
  const Tensor sum_exp = sums.slice(0, 1).view({t});
  const Tensor target_logit = sums.slice(1, 2).view({t});
  cross_entropy_row_max(ctx, row_max, logits);
  tp->all_reduce(row_max, ReduceOp::kMax);
  cross_entropy_sum_exp(ctx, sum_exp, logits, row_max);
  cross_entropy_target_logit(ctx, target_logit, logits, targets, vocab_start);
  tp->all_reduce(sums);
  cross_entropy_loss(ctx, losses, row_max, sum_exp, target_logit, targets);
  cross_entropy_grad(ctx, dlogits, logits, targets, row_max, sum_exp, vocab_start, grad_scale);
}

}  // namespace tmt
