#pragma once

#include <cstdint>

#include "kernels/base/tensor.h"

namespace tmt::cpu {

void embedding_fwd(const Tensor& out, const Tensor& ids, const Tensor& table, int64_t vocab_start);
void embedding_bwd(const Tensor& dtable, const Tensor& dout, const Tensor& ids,
                   int64_t vocab_start);

}  // namespace tmt::cpu
