// The CUDA side of kernels/embedding.h: table, out, dout, dtable f32 or bf16.
#pragma once

#include <cstdint>

#include "kernels/base/context.h"

namespace tmt::cuda {

void embedding_fwd(const Context& ctx, const Tensor& out, const Tensor& ids, const Tensor& table,
                   int64_t vocab_start);
// Accumulates with atomic adds: rows shared by several tokens are summed in no fixed order.
void embedding_bwd(const Context& ctx, const Tensor& dtable, const Tensor& dout, const Tensor& ids,
                   int64_t vocab_start);

}  // namespace tmt::cuda
