// embedding: token ids -> rows of a (possibly vocab-parallel) table.
//
//   fwd: out[t, :] = table[ids[t] - vocab_start, :]  if 0 <= ids[t] - vocab_start < V_local
//        out[t, :] = 0                                otherwise
//   bwd: dtable[ids[t] - vocab_start, :] += dout[t, :]  for in-range ids only
//
//   ids:    [T] i32, global token ids
//   table:  [V_local, D] f32|f64, this rank's rows [vocab_start, vocab_start + V_local)
//   out:    [T, D] same dtype as table   (written)
//   dout:   [T, D] same dtype as dtable
//   dtable: [V_local, D]                 (accumulated, +=)
//   CUDA: f32|bf16, and an f32 dtable with bf16 dout (fp32 gradient accumulation); the backward
//   adds with atomics (the order of additions into a row shared by several tokens is not fixed).
//
// With a vocab-parallel table each rank writes the rows it owns and zeros elsewhere, so summing
// `out` over the tensor-parallel ranks gives the full embedding. With vocab_start = 0 and
// V_local = V it is the plain lookup; ids outside the table are then also written as zero rows.
#pragma once

#include <cstdint>

#include "kernels/base/context.h"

namespace tmt {

void embedding_fwd(const Context& ctx, const Tensor& out, const Tensor& ids, const Tensor& table,
                   int64_t vocab_start = 0);
void embedding_bwd(const Context& ctx, const Tensor& dtable, const Tensor& dout, const Tensor& ids,
                   int64_t vocab_start = 0);

}  // namespace tmt
