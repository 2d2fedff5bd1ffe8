// What every layer of the model shares: where it runs, the micro-batch's shape, the groups it
// splits its work over, and the arenas its parameters and activations come from.
//
// Tensor parallelism (tp > 1) always comes with sequence parallelism: between the blocks each TP
// rank holds a contiguous chunk of T / tp of the micro-batch's T tokens (rows r·T/tp ..). A layer
// all-gathers its normalised input over TP before a column-parallel projection and
// reduce-scatters the row-parallel projection's partial output back to the chunks, so the
// residual stream, the norms and the MoE routing all work on T / tp tokens per rank.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/base/arena.h"
#include "kernels/base/context.h"
#include "parallel/comm.h"
#include "trainer/model/params.h"
#include "trainer/recipe/recipe.h"

namespace tmt {

struct LayerEnv {
  Context ctx;
  const Recipe* recipe = nullptr;
  int64_t batch = 0;  // B sequences per micro-batch
  int64_t seq = 0;    // S tokens per sequence
  // The activations' and weights' dtype: f32 (f64 for gradient checks), or bf16 in mixed
  // precision, where the master weights and gradients are f32 (params.h).
  DType dtype = DType::kF32;
  // Tensor parallelism (null: one rank); the sequence chunks of the residual stream follow it.
  Communicator* tp = nullptr;
  // Expert parallelism: the etp x ep ranks that share out the experts (null: one rank holds them
  // all); each expert's FFN is split over etp of them.
  Communicator* experts = nullptr;
  int64_t etp = 1;

  int64_t tokens() const { return batch * seq; }  // T: the whole micro-batch
  // Per-row statistics (norms' rstd, attention's lse, losses) and the router's tensors: f32, or
  // f64 in an f64 model.
  DType stat_dtype() const { return dtype == DType::kF64 ? DType::kF64 : DType::kF32; }
  int64_t tp_size() const { return tp != nullptr ? tp->size() : 1; }
  int64_t tp_rank() const { return tp != nullptr ? tp->rank() : 0; }
  int64_t local_tokens() const { return tokens() / tp_size(); }  // this rank's chunk
};

// Declares a parameter held whole by this rank.
size_t add_param(ParamStore& store, const std::string& name, Shape shape, ParamKind kind,
                 bool decay, ParamInit init, double init_std, int64_t tp_replicas = 1);
// Declares this rank's block of a parameter: `local` elements from `offset` in each dimension.
size_t add_param_block(ParamStore& store, const std::string& name, Shape global,
                       const std::vector<int64_t>& offset, Shape local, ParamKind kind, bool decay,
                       ParamInit init, double init_std, int64_t tp_replicas = 1);

// Sequence parallelism's two moves over the TP group (plain copies when tp = 1):
// full [T, D] = the TP ranks' chunks [T/tp, D] in rank order,
void gather_sequence(const LayerEnv& env, const Tensor& full, const Tensor& chunk);
// chunk [T/tp, D] = this rank's rows of the sum over TP of the partial results full [T, D].
void scatter_sequence(const LayerEnv& env, const Tensor& chunk, const Tensor& full);

}  // namespace tmt
