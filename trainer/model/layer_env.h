// What every layer of the model shares: where it runs, the model's shape, the micro-batch's shape,
// and the groups it splits its work over.
//
// Tensor parallelism always comes with sequence parallelism (parallel/sequence_parallel.h):
// between the blocks each TP rank holds a contiguous chunk of T / tp of the micro-batch's T
// tokens. A layer all-gathers its normalised input before a column-parallel projection and
// reduce-scatters a row-parallel projection's partial output back to the chunks, so the residual
// stream, the norms and the MoE routing all work on T / tp tokens per rank. At tp = 1 both moves
// vanish, so every layer is written once, for any tp.
//
// Each layer keeps two kinds of tensors: activations, saved by forward for backward (one set per
// in-flight micro-batch, from the model's activation arena), and temporaries, live only inside
// one call (from the shared scratch arena, released on return). A layer's temporaries are one
// struct per pass made by one function, called both on the counting arenas that size the real
// ones (allocate) and in the pass itself, so the sizes are never written twice.
#pragma once

#include <cstdint>
#include <optional>

#include "kernels/base/arena.h"
#include "kernels/base/context.h"
#include "parallel/comm.h"
#include "parallel/context_parallel.h"
#include "parallel/sequence_parallel.h"
#include "trainer/model/params.h"
#include "trainer/recipe/recipe.h"

namespace tmt {

struct LayerEnv {
  Context ctx;
  const ModelConfig* model = nullptr;
  int64_t batch = 0;  // B sequences per micro-batch
  // S tokens per sequence; under context parallelism this rank's 2·C of each sequence (cp below):
  // everything but attention sees them as the whole sequence.
  int64_t seq = 0;
  // The activations' and weights' dtype: f32 (f64 for gradient checks), or bf16 in mixed
  // precision, where the master weights and gradients are f32 (params.h).
  DType dtype = DType::kF32;
  // Tensor parallelism and the sequence chunks of the residual stream that follow it.
  SequenceParallel sp;
  // Context parallelism: attention over the whole sequences, and the statistics summed over them.
  ContextParallel cp;
  // Expert parallelism: the etp x ep ranks that share out the experts (null: one rank holds them
  // all); each expert's FFN is split over etp of them.
  Communicator* experts = nullptr;
  int64_t etp = 1;
  Recompute recompute = Recompute::kNone;  // train.recompute
  // train.precision fp8: the scaling of the FP8 GEMMs (gemm.h); none: GEMMs in the dtype.
  std::optional<Fp8Recipe> fp8 = std::nullopt;

  // Whether the layers recompute their cheap activations in backward (train.recompute: selective).
  bool selective() const { return recompute == Recompute::kSelective; }
  int64_t tokens() const { return batch * seq; }              // T: the whole micro-batch
  int64_t local_tokens() const { return sp.local_tokens(); }  // this rank's chunk
  // Per-row statistics (norms' rstd, attention's lse, losses) and the router's tensors: f32, or
  // f64 in an f64 model.
  DType stat_dtype() const { return dtype == DType::kF64 ? DType::kF64 : DType::kF32; }
  // This rank's place in the TP group, for choosing its shard of each parameter.
  int64_t tp_size() const { return sp.size(); }
  int64_t tp_rank() const { return sp.rank(); }
  // A [Tl, D] tensor in the model's dtype without memory: what stands for a pass's dx when its
  // temporaries are sized (only the shape is read).
  Tensor residual_stand_in() const {
    return Tensor{nullptr, dtype, ctx.device, Shape{local_tokens(), model->d_model}};
  }
  // Output projections start smaller so that the residual stream's variance does not grow with
  // depth: init_std / sqrt(2 · n_layers).
  double out_init_std() const;
};

}  // namespace tmt
