// router: a MoE layer's expert scores, top-k choice and the two router losses.
//
//   fwd: probs = softmax(logits) (or sigmoid(logits), elementwise)           [T, E]
//        topk_idx[t] = the K experts with the largest probs (ties: lower index first)   [T, K] i32
//        topk_w[t, k] = probs[t, topk_idx[t, k]], divided by Σ_k of them when renormalize (Mixtral)
//        lse[t] = logsumexp(logits[t])  (for the z-loss)                    [T]
//   bwd: the exact derivative, the choice of experts held fixed, of
//        Σ dtopk_w ⊙ topk_w + Σ dprobs ⊙ probs + Σ dlse ⊙ lse  with respect to logits (written).
//        dprobs and dlse may be empty tensors (Tensor{}): no such term.
//
// The losses, over the T tokens of a micro-batch (their gradients come back through router_bwd):
//   load_balancing_loss = coeff · E · Σ_e f_e · P_e
//       f_e = #{(t, k): topk_idx = e} / (T·K)  (a constant),  P_e = mean_t probs[t, e];
//       writes dprobs[t, e] = grad_weight · coeff · E · f_e / T
//   z_loss = coeff · mean_t lse[t]²;  writes dlse[t] = grad_weight · coeff · 2 · lse[t] / T
// Both return the loss value (coefficient applied, grad_weight not).
//
// When a micro-batch's tokens are split over ranks (sequence parallelism), both losses are taken
// over the whole micro-batch from statistics summed over those ranks:
//   router_stats: stats [2E + 1] f64 (written) = [#assignments to e (E), Σ_t probs[t, e] (E),
//                 Σ_t lse[t]²] over this rank's rows
//   load_balancing_from_stats: the loss with f_e, P_e from the summed stats and `tokens` (the whole
//                 micro-batch's T); writes dprobs for this rank's rows as above (T the whole's)
//   z_loss_from_stats: likewise coeff · Σ lse² / T; writes dlse for this rank's rows
// With one rank (stats of all T tokens) they equal the two functions above. `host_stats`, when
// given, is the same statistics in host memory (the caller has them, summed over its ranks): the
// loss value is computed from it, so on CUDA nothing is read back from the device.
//
// Workspace: on CUDA load_balancing_loss and z_loss reduce their statistics into
// router_loss_workspace_bytes, which the caller provides through Context::workspace
// (workspace.h); router_fwd, router_bwd and the *_from_stats functions (which have the caller's
// stats tensor) need none.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/base/context.h"

namespace tmt {

enum class RouterScore : uint8_t { kSoftmax, kSigmoid };

struct RouterParams {
  int64_t top_k = 2;
  RouterScore score = RouterScore::kSoftmax;
  bool renormalize = true;
};

void router_fwd(const Context& ctx, const Tensor& probs, const Tensor& topk_idx,
                const Tensor& topk_w, const Tensor& lse, const Tensor& logits,
                const RouterParams& params);
void router_bwd(const Context& ctx, const Tensor& dlogits, const Tensor& dtopk_w,
                const Tensor& dprobs, const Tensor& dlse, const Tensor& probs,
                const Tensor& topk_idx, const Tensor& topk_w, const Tensor& logits,
                const RouterParams& params);

double load_balancing_loss(const Context& ctx, const Tensor& dprobs, const Tensor& probs,
                           const Tensor& topk_idx, double coeff, double grad_weight);
double z_loss(const Context& ctx, const Tensor& dlse, const Tensor& lse, double coeff,
              double grad_weight);
// Bytes of Context::workspace that load_balancing_loss and z_loss use on `device` for E experts:
// on CUDA 8 · (2E + 1) (the statistics of router_stats, f64), 0 on the CPU.
size_t router_loss_workspace_bytes(Device device, int64_t experts);

void router_stats(const Context& ctx, const Tensor& stats, const Tensor& probs,
                  const Tensor& topk_idx, const Tensor& lse);
double load_balancing_from_stats(const Context& ctx, const Tensor& dprobs, const Tensor& stats,
                                 int64_t tokens, int64_t top_k, double coeff, double grad_weight,
                                 const double* host_stats = nullptr);
double z_loss_from_stats(const Context& ctx, const Tensor& dlse, const Tensor& lse,
                         const Tensor& stats, int64_t tokens, double coeff, double grad_weight,
                         const double* host_stats = nullptr);

}  // namespace tmt
