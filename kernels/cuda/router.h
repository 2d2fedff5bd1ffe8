// The CUDA side of kernels/router.h, in f32 (logits, probs, topk_w, lse and their gradients; the
// statistics f64). One warp per token row for the forward and backward: the top-k selection is the
// reference's (repeated arg-max, ties to the lower index), so on inputs without near-ties the
// chosen experts are the CPU's exactly. The loss functions reduce on the device and copy the few
// numbers they return back to the host (they synchronize the stream).
#pragma once

#include "kernels/router.h"

namespace tmt::cuda {

void router_fwd(const Context& ctx, const Tensor& probs, const Tensor& topk_idx,
                const Tensor& topk_w, const Tensor& lse, const Tensor& logits, const Tensor& bias,
                const RouterParams& params);
void router_bwd(const Context& ctx, const Tensor& dlogits, const Tensor& dtopk_w,
                const Tensor& dprobs, const Tensor& dlse, const Tensor& probs,
                const Tensor& topk_idx, const Tensor& topk_w, const Tensor& logits,
                const RouterParams& params);
double load_balancing_loss(const Context& ctx, const Tensor& dprobs, const Tensor& probs,
                           const Tensor& topk_idx, double coeff, double grad_weight);
double z_loss(const Context& ctx, const Tensor& dlse, const Tensor& lse, double coeff,
              double grad_weight);
// The workspace of load_balancing_loss (2E + 1 f64 statistics) and z_loss (one f64).
size_t router_loss_workspace_bytes(int64_t experts);
void router_stats(const Context& ctx, const Tensor& stats, const Tensor& probs,
                  const Tensor& topk_idx, const Tensor& lse);
// host_stats (may be null): the stats in host memory, read instead of copying them back.
double load_balancing_from_stats(const Context& ctx, const Tensor& dprobs, const Tensor& stats,
                                 int64_t tokens, int64_t top_k, double coeff, double grad_weight,
                                 const double* host_stats);
double z_loss_from_stats(const Context& ctx, const Tensor& dlse, const Tensor& lse,
                         const Tensor& stats, int64_t tokens, double coeff, double grad_weight,
                         const double* host_stats);
void seq_aux_stats(const Context& ctx, const Tensor& stats, const Tensor& probs,
                   const Tensor& topk_idx, int64_t first_token, int64_t seq_len);
double seq_aux_from_stats(const Context& ctx, const Tensor& dprobs, const Tensor& probs,
                          const Tensor& stats, int64_t first_token, int64_t seq_len,
                          int64_t seq_tokens, int64_t top_k, double coeff, double grad_weight,
                          const double* host_stats);

}  // namespace tmt::cuda
