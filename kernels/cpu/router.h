#pragma once

#include "kernels/router.h"

namespace tmt::cpu {

void router_fwd(const Tensor& probs, const Tensor& topk_idx, const Tensor& topk_w,
                const Tensor& lse, const Tensor& logits, const Tensor& bias,
                const RouterParams& params);
void router_bwd(const Tensor& dlogits, const Tensor& dtopk_w, const Tensor& dprobs,
                const Tensor& dlse, const Tensor& probs, const Tensor& topk_idx,
                const Tensor& topk_w, const Tensor& logits, const RouterParams& params);
double load_balancing_loss(const Tensor& dprobs, const Tensor& probs, const Tensor& topk_idx,
                           double coeff, double grad_weight);
double z_loss(const Tensor& dlse, const Tensor& lse, double coeff, double grad_weight);
void router_stats(const Tensor& stats, const Tensor& probs, const Tensor& topk_idx,
                  const Tensor& lse);
double load_balancing_from_stats(const Tensor& dprobs, const Tensor& stats, int64_t tokens,
                                 int64_t top_k, double coeff, double grad_weight);
double z_loss_from_stats(const Tensor& dlse, const Tensor& lse, const Tensor& stats, int64_t tokens,
                         double coeff, double grad_weight);
void seq_aux_stats(const Tensor& stats, const Tensor& probs, const Tensor& topk_idx,
                   int64_t first_token, int64_t seq_len);
// stats: host memory, [batch, 2E]
double seq_aux_from_stats(const Tensor& dprobs, const Tensor& probs, const double* stats,
                          int64_t batch, int64_t first_token, int64_t seq_len, int64_t seq_tokens,
                          int64_t top_k, double coeff, double grad_weight);

}  // namespace tmt::cpu
