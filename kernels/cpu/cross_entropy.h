#pragma once

#include <cstdint>

#include "kernels/base/tensor.h"

namespace tmt::cpu {

// dlogits may be undefined (losses only) or alias logits.
void cross_entropy(const Tensor& losses, const Tensor& dlogits, const Tensor& logits,
                   const Tensor& targets, double grad_scale);

void cross_entropy_row_max(const Tensor& row_max, const Tensor& logits);
void cross_entropy_sum_exp(const Tensor& sum_exp, const Tensor& logits, const Tensor& row_max);
void cross_entropy_target_logit(const Tensor& target_logit, const Tensor& logits,
                                const Tensor& targets, int64_t vocab_start);
void cross_entropy_loss(const Tensor& losses, const Tensor& row_max, const Tensor& sum_exp,
                        const Tensor& target_logit, const Tensor& targets);
void cross_entropy_grad(const Tensor& dlogits, const Tensor& logits, const Tensor& targets,
                        const Tensor& row_max, const Tensor& sum_exp, int64_t vocab_start,
                        double grad_scale);

}  // namespace tmt::cpu
