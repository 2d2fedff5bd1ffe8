// router: a MoE layer's expert scores, top-k choice and the two router losses.
//
//   fwd: probs = softmax(logits) (or sigmoid(logits), elementwise)           [T, E]
//        choice[t, e] = probs[t, e] + bias[e]  (bias [E] may be Tensor{}: 0; the aux-loss-free
//                       expert bias of DeepSeek-V3, which steers the choice and nothing else)
//        group-limited (n_groups > 1, DeepSeek-V3): the E experts form n_groups groups of
//                       E / n_groups consecutive ones (at least 2); a group's score is the sum of
//                       its two largest choice scores; only the topk_groups best groups (ties: lower
//                       index) are eligible
//        topk_idx[t] = the K eligible experts with the largest choice (ties: lower index first)
//                                                                               [T, K] i32
//        topk_w[t, k] = scaling · probs[t, topk_idx[t, k]], divided by Σ_k probs[t, topk_idx[t, k]]
//                       when renormalize (Mixtral, DeepSeek-V3's norm_topk_prob); scaling is
//                       routed_scaling_factor                                   [T, K]
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
// With one rank (stats of all T tokens) they equal the two functions above.
//
// The sequence-wise balance loss (DeepSeek-V3's complementary loss), over the micro-batch's B
// sequences of S tokens; row t of this rank is token first_token + t of the micro-batch (its chunk
// under sequence parallelism), in sequence (first_token + t) / seq_len. seq_len is S, or under
// context parallelism the tokens of each sequence the rank's rows number (its chunks, 2·C); the
// formula's S is seq_tokens (seq_aux_from_stats), the whole sequence's:
//   seq_aux_loss = coeff · (1/B) Σ_b Σ_e f_be · P_be
//       f_be = E / (K·S) · #{(t in b, k): topk_idx = e}  (a constant),
//       P_be = (1/S) Σ_{t in b} n[t, e],  n[t, e] = probs[t, e] / Σ_j probs[t, j]
//   seq_aux_stats: stats [B, 2E] f64 (written) = [#assignments of b to e (E), Σ_{t in b} n[t, e]
//                 (E)] over this rank's rows (rows of other ranks count 0: sum over the ranks)
//   seq_aux_from_stats: the loss from the summed stats; ACCUMULATES into dprobs (this rank's rows)
//                 the derivative through n: with g[t, e] = grad_weight · coeff · f_be / (B·S),
//                 dprobs[t, j] += (g[t, j] - Σ_e g[t, e] n[t, e]) / Σ_e probs[t, e] `host_stats`, when
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
  int64_t n_groups = 1;     // 1: every expert is eligible
  int64_t topk_groups = 1;  // with n_groups > 1: the eligible groups
  double scaling = 1.0;     // routed_scaling_factor
};

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

void seq_aux_stats(const Context& ctx, const Tensor& stats, const Tensor& probs,
                   const Tensor& topk_idx, int64_t first_token, int64_t seq_len);
double seq_aux_from_stats(const Context& ctx, const Tensor& dprobs, const Tensor& probs,
                          const Tensor& stats, int64_t first_token, int64_t seq_len,
                          int64_t seq_tokens, int64_t top_k, double coeff, double grad_weight,
                          const double* host_stats = nullptr);

}  // namespace tmt
