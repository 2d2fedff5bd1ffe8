// The CUDA side of kernels/cross_entropy.h: logits and dlogits f32 or bf16; losses and the per-row
// statistics f32|f64.
#pragma once

#include <cstdint>

#include "kernels/base/context.h"

namespace tmt::cuda {

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

}  // namespace tmt::cuda
