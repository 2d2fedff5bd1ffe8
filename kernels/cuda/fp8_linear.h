// The linears' and experts' FP8 GEMMs on CUDA (fp8.recipe blockwise): kernels/fp8.h's
// fp8_linear_* and fp8_grouped_linear_* for bf16 operands, each pass its quantize kernels
// (fp8_quantize.h) and one FP8 GEMM (fp8_gemm_sm90.h):
//
//   forward  y (+)= x Wᵀ     x in rows, W in blocks                     -> bf16 y
//   dgrad    dx (+)= dy W    dy in rows, W in blocks transposed          -> bf16 dx
//   wgrad    dW += dyᵀ x     dy and x in columns (transposed, the tokens padded to 16 with zeros)
//                                                                       -> f32 dW
// The experts run one GEMM per expert with rows (the host counts), each expert's rows a tensor of
// their own so that their column tiles restart at the expert's first row, as the CPU reference
// tiles them. The rows go 4096 at a time (the weight quantized once a call), so the codes and
// scales, which live in Context::workspace for the length of the call, take
// fp8_linear_workspace_bytes(n, k) whatever the rows. x, dy bf16 [rows, k] / [rows, n]; W bf16
// [n, k] ([E, n, k]); dW f32. n and k multiples of 16 (the GEMM's 16-byte rows);
// fp8_linear_supported says which.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/base/context.h"

namespace tmt::cuda {

// Whether this build and the current GPU run FP8 (the sm_90a kernels compiled, a Hopper GPU), and
// if not why; and whether a shape can (n and k multiples of 16, on such a GPU).
bool fp8_linear_available(std::string* why);
bool fp8_linear_supported(int64_t n, int64_t k);
size_t fp8_linear_workspace_bytes(int64_t n, int64_t k);

void fp8_linear_fwd(const Context& ctx, const Tensor& y, const Tensor& x, const Tensor& weight,
                    bool pow2_scales, bool accumulate);
// dx or dweight may be empty (Tensor{}): that pass is skipped.
void fp8_linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                    const Tensor& x, const Tensor& weight, bool pow2_scales, bool accumulate_dx);
void fp8_grouped_linear_fwd(const Context& ctx, const Tensor& y, const Tensor& x,
                            const Tensor& weight, const std::vector<int64_t>& counts,
                            bool pow2_scales);
// dx written, dweight accumulated, as grouped_linear_bwd.
void fp8_grouped_linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight,
                            const Tensor& dy, const Tensor& x, const Tensor& weight,
                            const std::vector<int64_t>& counts, bool pow2_scales);

}  // namespace tmt::cuda
