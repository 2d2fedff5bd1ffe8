// `tramontane plan`'s model of one training step of a resolved recipe on N GPUs of one kind:
// memory per rank (memory_plan.h, the trainer's own sizing code), bytes each parallel group moves
// per step and over which link, and a step time from FLOPs, bytes and link rates.
//
// Per rank and step, with m micro-batches per data-parallel rank, T = micro_batch · seq_len / cp
// tokens of a micro-batch on a rank, D = d_model, b = bytes per activation (2, bf16), Ls (Lm) the
// (MoE) layers of the busiest stage, K = top_k, a ring collective over n ranks sending (n-1)/n of
// its buffer:
//   TP (sequence parallel): 8 collectives a layer and micro-batch (an all-gather before and a
//       reduce-scatter after attention and the FFN, forward and backward), each (tp-1)/tp·T·D·b
//   EP: 4 all-to-alls an MoE layer and micro-batch (dispatch and combine, forward and backward),
//       each (ep-1)/ep·(T/tp)·K·D·b; with FP8 GEMMs and fp8.dispatch the forward's dispatch
//       carries fp8_row_bytes(D) a row instead of D·b (D + 4·D/128 blockwise, D + D/32 MXFP8)
//   CP (parallel/context_parallel.h): every attention layer all-gathers the keys and values of
//       the whole sequences in the forward, again in the backward, and reduce-scatters their
//       gradients: 3 collectives a layer and micro-batch (4 with recomputation, which gathers
//       once more), each (cp-1)/cp·micro_batch·seq_len·W·b, W the keys' and values' width on a
//       rank (GQA 2·max(1, Hk/tp)·Dh; MLA H/tp·(dn + dr + dv), its keys expanded)
//   PP: a micro-batch's activations out and their gradient back: 2·(T/tp)·D·b
//   DP / EDP: the fp32 gradients reduced (all-reduce, or ZeRO-1's reduce-scatter and parameter
//       all-gather: the same volume) 2·(n-1)/n·4·P, P the rank's dense (or expert) parameters;
//       the dense ones over cp · dp ranks
// A group whose ranks share one NVLink domain (nvlink_domain consecutive ranks) moves at NVLink's
// rate, else at the network's, each times link_efficiency.
//
// Activation recomputation (train.recompute) adds FLOPs that are not model FLOPs, per token:
//   full       one more forward of the blocks: (model FLOPs - the head's 6·V·D) / 3
//   selective  the attention core's forward again (attention FLOPs / 3) and the recomputed
//              elementwise ops, counted as 4·D per norm (2 a layer) and 4·F' per SwiGLU (F' the
//              active hidden size of the layer's FFN or experts, K·Fe + shared)
// and collectives: full reruns the forward's 4 TP collectives a layer (12 instead of 8) and 2
// all-to-alls an MoE layer (6 instead of 4); selective re-gathers the 2 norms' outputs (10 TP
// collectives a layer).
//
// Step time = compute + bubble + every communication term + optimizer, nothing overlapped (the
// trainer does not overlap communication with compute yet); with `overlap`,
// max(compute, communication) + bubble + optimizer:
//   compute   = (model + recompute FLOPs) of the busiest rank / (peak · matmul_efficiency), the
//               matmul FLOPs (and full recompute's) at the GEMMs' format's peak (bf16 or fp8),
//               the attention core's and selective recompute's at bf16's
//   bubble    = compute · (pp-1)/(vpp·m) (1F1B, interleaved with vpp chunks a rank)
//   optimizer = 30 bytes per local parameter (fp32 value, grad, m, v read; value, m, v and the bf16
//               copy written) over HBM at hbm_efficiency; 1/(cp·dp) of it with ZeRO-1
// MFU = model FLOPs per second per GPU / the dense peak of the GEMMs' format (bf16, or fp8).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "trainer/memory_plan.h"
#include "trainer/plan/hardware.h"
#include "trainer/recipe/recipe.h"

namespace tmt {

struct PlanAssumptions {
  double matmul_efficiency = 0.55;  // sustained share of peak for the model's FLOPs
  // FP8 GEMMs: the linears' and experts' GEMMs at the FP8 peak, the attention core at bf16's, as
  // FP8 training runs them (MXFP8 on Blackwell alike). Off: bf16 throughout.
  bool fp8_gemms = false;
  // Communication hidden behind compute (the reference systems' overlap of the expert
  // all-to-all, the gradient reduction and the TP collectives): the step takes the longer of
  // compute and communication instead of their sum. Off: tramontane overlaps nothing yet.
  bool overlap = false;
  double link_efficiency = 0.8;  // of the NVLink / network rate a large collective reaches
  double hbm_efficiency = 0.8;   // of the HBM rate a streaming kernel reaches
  int nvlink_domain = 0;         // 0 = the hardware's
  // Left to what the arenas do not hold: the CUDA context, NCCL's buffers, the libraries'
  // handles (the arenas themselves do not fragment).
  double reserve_gib = 2.0;
};

struct GroupTraffic {
  std::string group;   // tp | cp | ep | pp | dp (cp · dp ranks with cp) | edp
  int64_t size = 1;    // ranks in the group
  double bytes = 0;    // sent per rank per step
  bool nvlink = true;  // inside one NVLink domain
  double seconds = 0;  // bytes over the link's rate
};

struct StepEstimate {
  int64_t gpus = 0;
  int nvlink_domain = 0;
  bool fp8_gemms = false, overlap = false;  // the assumptions it was made under
  int64_t micro_batches = 0;                // m, per data-parallel rank
  double tokens_per_step = 0;
  double flops_per_token = 0;            // model FLOPs (model_stats.h)
  double busiest_flops = 0;              // of one rank per step
  double recompute_flops_per_token = 0;  // train.recompute's extra FLOPs (not model FLOPs)
  double busiest_recompute_flops = 0;    // of one rank per step
  double compute_s = 0, bubble_s = 0, optimizer_s = 0, step_s = 0;
  double communication_s = 0;  // every group's seconds summed (hidden behind compute with overlap)
  std::vector<GroupTraffic> traffic;
  double tokens_per_s = 0, tflops_per_gpu = 0, mfu = 0;
  std::vector<StageMemory> memory;  // per pipeline stage
  size_t peak_bytes = 0;            // the largest stage's total
  bool fits = false;                // peak_bytes + reserve <= the device's memory
};

// `recipe` resolved for gpus ranks; planned as it would run on GPUs (train.device cuda, bf16).
// Without size_memory the memory is left empty (and fits false): the step terms alone, cheap.
StepEstimate estimate_step(const Recipe& recipe, const Hardware& hw, const PlanAssumptions& a,
                           bool size_memory = true);

}  // namespace tmt
