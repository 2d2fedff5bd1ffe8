// The MoE feed-forward of a block (Mixtral routing):
//
//   logits = h Wrᵀ                        [T, E]  (written in fp32, also from bf16 h and Wr:
//                                                  the routing itself is fp32)
//   p = softmax(logits) (or sigmoid), keep the top-k per token (of p + the expert bias, among the
//   best topk_groups groups: kernels/router.h), renormalise their weights w, times
//   routed_scaling_factor
//   each token's h goes to its k experts; expert e computes SwiGLU with W13[e] [2Fe, D] and
//   W2[e] [D, Fe]:
//   y += Σ_k w[t,k] · expert_{idx[t,k]}(h[t])
//
// and the two router losses, over the micro-batch's T tokens:
//   load balancing (Switch / Megatron):  aux = aux_loss_coeff · E · Σ_e f_e · P_e
//       f_e = (assignments to e) / (T · K),  P_e = mean_t p[t, e]  (f_e held constant in backward)
//   router z-loss:                        z = z_loss_coeff · mean_t logsumexp(logits[t])²
//   sequence-wise (DeepSeek-V3):         seq_aux_loss_coeff · mean_b Σ_e f_be · P_be over the B
//       sequences (kernels/router.h), from per-sequence statistics summed over TP
// They are added to the training loss of each MoE layer and weighted like the micro-batch's share
// of the step (aux_weight), so they are per-layer sums and micro-batch means.
//
// Expert parallelism: the experts are shared out over the etp x ep ranks of LayerEnv::experts
// (parallel/expert_exchange.h): rank q of ep holds experts [q·E/ep, (q+1)·E/ep), and with expert
// tensor parallelism (etp > 1) each of its etp ranks holds a slice Fe/etp of their hidden size
// (column-parallel W13, row-parallel W2; the partial outputs are summed on the way back). Each rank
// routes its own tokens; the rows bound for each rank's experts go there in one all-to-all (with
// the per-expert counts exchanged first), are reordered expert-major, run through the local
// experts, reordered back and returned by a second all-to-all; backward mirrors it.
//
// Under tensor (and so sequence) parallelism each TP rank routes its own chunk of T/tp tokens; the
// router losses still cover the whole micro-batch: the statistics they need (assignments and
// probability sums per expert, Σ lse²) are summed over TP first, so the losses and their
// gradients equal the one-rank values.
//
// Memory: how many rows the experts receive is known only after routing; the expert-side rows are
// planned for the balanced load and grow when a micro-batch needs more (expert_rows.h: the
// policy). Backward keeps the experts' inputs, gate/up projections and activations (not the
// activations under selective recomputation: recomputed from the gate/up projections) and the rows
// as they came back; everything else is scratch.
//
// Dropless by default: every assignment is computed. With a capacity factor c each expert takes at
// most ⌈c · T · K / E⌉ of a rank's assignments (T: the tokens the rank routes, T/tp under tensor
// parallelism), the earliest tokens first (in token order, a token's k-th choice before later
// tokens); a dropped assignment contributes nothing: the token keeps its residual and whatever its
// other experts give.
#pragma once

#include <optional>
#include <vector>

#include "kernels/moe_dispatch.h"
#include "parallel/expert_exchange.h"
#include "trainer/model/expert_rows.h"
#include "trainer/model/layer_env.h"

namespace tmt {

struct MoeStats {
  // The coefficient-weighted values as they enter the loss (before aux_weight); aux_loss is the
  // load-balancing loss plus the sequence-wise one.
  double aux_loss = 0.0;
  double z_loss = 0.0;
  double max_load = 0.0;     // max over experts of assignments / mean assignments (1 = balanced)
  int64_t dropped = 0;       // assignments dropped by the capacity limit
  std::vector<double> load;  // [E] assignments to each expert over the whole micro-batch (TP
                             // summed), before any capacity drop
};

class MoeLayer {
 public:
  MoeLayer(const LayerEnv& env, int64_t layer, ParamStore& store);
  void allocate(Arena& acts, Arena& scratch);
  // The expert-side rows live in `rows` (expert_rows.h): the kept ones in the stack of the
  // in-flight micro-batch `slot`. Before the first forward.
  void bind(ExpertRows& rows, int64_t slot);

  // The rows this rank's experts receive a micro-batch at the planned load (expert_rows.h): the
  // balanced load etp·T·K, or the capacity bound; never more than every assignment of the group.
  int64_t planned_received() const;
  // At `rows` received rows: the bytes kept for backward, and the most scratch one pass takes.
  size_t kept_bytes(int64_t rows) const;
  size_t scratch_bytes(int64_t rows) const;

  // y += MoE(h), both this rank's chunk [T/tp, D]. aux_weight scales the router losses' gradients
  // (their share of the step's loss).
  MoeStats forward(const Tensor& y, const Tensor& h, double aux_weight);
  // dh = d MoE / dh · dy, plus the router losses' gradients.
  void backward(const Tensor& dh, const Tensor& dy, const Tensor& h);

 private:
  LayerEnv env_;
  ParamStore* store_;
  int64_t layer_;
  int64_t experts_, top_k_, hidden_;  // hidden_: this rank's slice of Fe
  size_t router_, w13_, w2_;
  std::optional<size_t> bias_;  // the expert bias [E] (a buffer), when bias_update_rate > 0
  // activations (T: this rank's tokens): [T,E] [T,E] [T,K] [T,K] [T] [T,E] [T], in stat_dtype()
  Tensor router_logits_, probs_, topk_idx_, topk_w_, lse_, dprobs_, dlse_;
  Tensor stats_;                    // f64 [2E + 2]: router_stats, then dropped assignments
  std::vector<double> stats_host_;  // the same on the host
  Tensor seq_stats_;                // f64 [B, 2E]: seq_aux_stats (seq_aux_loss_coeff > 0)
  std::vector<double> seq_stats_host_;
  // This rank's assignments in plan order, at most T·K rows of [D], as they come back from the
  // experts (unpermute's backward needs them).
  Tensor y_returned_;
  DispatchPlan plan_;        // this rank's tokens over all experts
  ExpertExchange exchange_;  // to and from the ranks that hold the experts
  int64_t rows_ = 0;         // assignments this rank sends (the kept ones)
  int64_t recv_ = 0;         // rows its experts receive
  Arena* scratch_ = nullptr;
  ExpertRows* rows_mem_ = nullptr;  // bound by the model (bind)
  int64_t slot_ = 0;

  // What backward needs of the received rows, in expert-major order [R, .]: the experts' inputs,
  // their gate/up projections [2Fe] and SwiGLU activations [Fe]. From the slot's stack; under
  // selective recomputation (layer_env.h) the activations are not kept but taken from the expert
  // scratch by each pass (ReceivedForward, ReceivedBackward), and backward recomputes them from
  // the gate/up projections.
  struct KeptRows {
    Tensor x_experts, gate_up, act;
  };
  KeptRows kept_;
  template <class Memory>
  KeptRows kept_rows(Memory& memory, int64_t rows) const;

  // forward: this rank's rows sent to the experts [T·K, D] and, with etp > 1, the etp partial
  // outputs of each that come back [etp·T·K, D] (from the model's scratch); the rows as received
  // (source order) and the experts' outputs [R, D] (from the expert scratch)
  struct ForwardTemps {
    Tensor x_sent, y_partials;
    Tensor x_packed;  // FP8 dispatch over several ranks: x_sent's rows as sent (fp8_pack_rows)
  };
  ForwardTemps forward_temps(Arena& scratch) const;
  struct ReceivedForward {
    Tensor x_received, y_experts;
    Tensor act;       // selective recomputation only
    Tensor x_packed;  // FP8 dispatch over several ranks: the rows as they arrive
  };
  // The dispatch carries FP8 rows (train.precision fp8 with fp8.dispatch), and over several ranks
  // packed ones.
  bool fp8_dispatch() const { return env_.fp8 && env_.fp8->dispatch; }
  bool packed_dispatch() const {
    return fp8_dispatch() && env_.experts != nullptr && env_.experts->size() > 1;
  }
  template <class Memory>
  ReceivedForward received_forward(Memory& memory, int64_t rows) const;

  // backward: the gradients of the tensors above (d<name>), of the routing weights and logits;
  // the received-row ones [R, .] from the expert scratch
  struct BackwardTemps {
    Tensor dy_returned, dx_sent, dx_partials, dtopk_w, dlogits;
    Tensor dlogits_c;  // dlogits cast to the model's dtype (dlogits itself when they agree)
  };
  BackwardTemps backward_temps(Arena& scratch) const;
  struct ReceivedBackward {
    Tensor dy_received, dy_experts, dact, dgate_up, dx_experts, dx_received;
    Tensor act;  // selective recomputation only
  };
  template <class Memory>
  ReceivedBackward received_backward(Memory& memory, int64_t rows) const;
};

}  // namespace tmt
