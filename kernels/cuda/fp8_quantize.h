// FP8 training's quantize kernels (fp8.recipe blockwise, kernels/fp8.h): a bf16 or f32 operand
// into e4m3 codes (kF8E4M3 bytes) and fp32 tile scales, in the tiles and the orders the FP8 GEMM
// (fp8_gemm_sm90.h) takes. Any architecture; the linears' FP8 passes (fp8_linear.h) call them.
//
// A tile's scale is s = amax / 448 in fp32 (with pow2_scales the power of two at or above it), 1
// for a tile of zeros, NaN for a tile holding a NaN or an infinity; each element is e4m3(x / s),
// the quotient taken in fp64 and rounded once to e4m3 (satfinite, ties to even) as the CPU
// reference does, so that a code times its scale is exactly fp8_fake_quant's value for that tile.
//
//   fp8_quantize_rows     in [R, C] in 1 x 128 tiles along C -> codes [R, C], scales
//                         [ceil(C/128), R] (R fastest)
//   fp8_quantize_columns  in [R, C] in 128 x 1 tiles along R, written transposed -> codes [C, P],
//                         scales [ceil(R/128), C] (C fastest); P = padded_rows (R when 0, at
//                         most R's last tile's end) gives each transposed row P codes, zeros past
//                         R, so that a GEMM can take it as a K of whole 16-byte units
//                         (fp8_gemm_sm90.h)
//   fp8_quantize_blocks   in [N, K] in 128 x 128 blocks -> codes [N, K] and, when asked, their
//                         transpose [K, N]; scales [ceil(K/128), ceil(N/128)] (N fastest) and the
//                         transpose's [ceil(N/128), ceil(K/128)] (K fastest)
#pragma once

#include "kernels/base/context.h"

namespace tmt::cuda {

void fp8_quantize_rows(const Context& ctx, const Tensor& codes, const Tensor& scales,
                       const Tensor& in, bool pow2_scales);
void fp8_quantize_columns(const Context& ctx, const Tensor& codes, const Tensor& scales,
                          const Tensor& in, bool pow2_scales, int64_t padded_rows = 0);
// codes_t and scales_t with null data skip the transpose.
void fp8_quantize_blocks(const Context& ctx, const Tensor& codes, const Tensor& scales,
                         const Tensor& codes_t, const Tensor& scales_t, const Tensor& in,
                         bool pow2_scales);

}  // namespace tmt::cuda
