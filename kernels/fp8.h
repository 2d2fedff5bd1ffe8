// fp8: the numerics of FP8 training (train.precision: fp8), defined here on the CPU by fake
// quantization: a GEMM operand is quantized to e4m3 with fp32 scales and dequantized back to its
// dtype, and the GEMM then runs as before on the dequantized values, so the result is what an FP8
// GEMM with fp32 accumulation computes (up to the order of its sums). The CUDA kernels are held to
// this reference.
//
// e4m3 (OCP FP8 E4M3, "fn": no infinities): 1 sign, 4 exponent (bias 7), 3 mantissa bits; normal
// values 2^-6 .. 448, subnormals k · 2^-9 for k = 1 .. 7. e4m3(x) rounds x to the nearest of them,
// ties to even; |x| past 448 saturates to ±448 (CUDA's satfinite conversion); NaN stays NaN.
//
// A tile of a [rows, cols] tensor (tile_rows × tile_cols, the last tiles of a row or column cut
// short) is quantized with one scale, s = amax / 448 (amax the tile's largest |x|), or with
// pow2_scales the power of two at or above it (s = 2^ceil(log2(amax / 448)): exact to apply and
// to remove). Each element becomes e4m3(x / s) · s. A tile of zeros keeps s = 1 (it stays zero);
// a tile holding a NaN or an infinity becomes NaN throughout, so the non-finite step check
// (trainer.h) skips the step as it would in bf16.
//
// Which tiles each GEMM operand takes (DeepSeek-V3's blockwise recipe; kBlockwise):
//   forward   y = x Wᵀ          x [T, K] in 1 × 128 tiles along K, W [N, K] in 128 × 128 blocks
//   dgrad     dx = dy W         dy [T, N] in 1 × 128 tiles along N, W as in the forward
//   wgrad     dW += dyᵀ x       dy and x in 128 × 1 tiles along T (the transposed copies)
// kTensorwise gives every operand one scale from its current amax. Expert GEMMs
// (grouped_linear.h) quantize each expert's weight on its own and restart the 128 × 1 tiles at
// each expert's first row. The accumulation is the GEMM's own (fp32 on the CPU throughout, which
// is what the GPU's promotion of partial sums to fp32 every 128 products approximates).
//
// Blackwell's block formats (their tensor cores apply the block scales themselves):
//   MXFP8 (OCP Microscaling v1.0; kMxfp8): 1 × 32 blocks (32 × 1 for the weight gradient's
//     transposed operands, weights 1 × 32 along K as well), each with a power-of-two scale stored
//     as e8m0, X = 2^(floor(log2 amax) - 8) (8: e4m3's largest exponent); elements e4m3(x / X),
//     saturating (amax / X reaches up to 511).
//   NVFP4 (nvfp4_fake_quant): e2m1 elements (0, 0.5, 1, 1.5, 2, 3, 4, 6), 1 × 16 blocks with an
//     e4m3 block scale and one fp32 scale for the tensor: s_t = amax_tensor / (448 · 6), s_b =
//     e4m3(amax_block / (6 · s_t)), elements e2m1(x / (s_b · s_t)). Here as a quantizer only:
//     NVFP4 training also needs random Hadamard transforms and stochastic rounding of the
//     gradients, which are not defined here.
//
// On the CPU, f32 and f64 tensors. On CUDA (kernels/cuda/fp8_linear.h) the linears' and experts'
// ops take bf16 operands and f32 weight gradients, blockwise only, and quantize for real: e4m3
// codes and fp32 scales into Hopper's FP8 GEMMs, which this reference holds
// (tests/kernels/cuda/fp8_gemm_test.cpp); the expert dispatch stays bf16 there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/base/context.h"

namespace tmt {

enum class Fp8Scaling : uint8_t { kBlockwise, kTensorwise, kMxfp8 };

struct Fp8Recipe {
  Fp8Scaling scaling = Fp8Scaling::kBlockwise;
  bool pow2_scales = false;  // scales rounded up to powers of two
  // The MoE layer's dispatch carries FP8 rows (fp8_pack_rows) that the experts' first GEMM takes
  // as its quantized input; blockwise and MXFP8 only (a row's tiles are quantized alone).
  bool dispatch = false;
};

inline constexpr double kE4m3Max = 448.0;
inline constexpr int64_t kFp8Tile = 128;  // the blockwise recipe's tile length
inline constexpr int64_t kMxBlock = 32;   // MXFP8's block length
inline constexpr int64_t kNvfp4Block = 16;

// x rounded to e4m3 (satfinite, ties to even), as a double.
double e4m3(double x);

// The scale of a tile whose largest magnitude is `amax` (NaN for a non-finite amax, 1 for 0).
double fp8_scale(double amax, bool pow2_scales);
// x rounded to e2m1 (NVFP4's elements: ties to even, saturating at ±6; NaN stays NaN).
double e2m1(double x);
// MXFP8's shared scale of a block with this amax: 2^(floor(log2 amax) - 8) (NaN for a non-finite
// amax, 1 for 0), within e8m0's 2^-127 .. 2^127.
double mx_scale(double amax);

// out = in fake-quantized in tiles of tile_rows × tile_cols of in seen as [rows, numel / rows];
// `out` may be `in`. f32|f64 on the CPU.
void fp8_fake_quant(const Context& ctx, const Tensor& out, const Tensor& in, int64_t rows,
                    int64_t tile_rows, int64_t tile_cols, bool pow2_scales);

// out = in fake-quantized to MXFP8 in blocks of tile_rows × tile_cols (1 × 32 or 32 × 1).
void mxfp8_fake_quant(const Context& ctx, const Tensor& out, const Tensor& in, int64_t rows,
                      int64_t tile_rows, int64_t tile_cols);
// out = in fake-quantized to NVFP4: in seen as [rows, numel / rows], 1 × 16 blocks along the rows,
// one tensor scale over all of in.
void nvfp4_fake_quant(const Context& ctx, const Tensor& out, const Tensor& in, int64_t rows);

// FP8 rows on the wire (the expert dispatch): row r of `in` [rows, cols] (f32|f64) as its cols e4m3
// codes, then its 1 × tile scales (the forward's tiles of an activation): blockwise one fp32 per
// 128 columns (4 bytes, little-endian), MXFP8 one e8m0 byte per 32. `packed` is kF8E4M3 (bytes)
// [rows, fp8_row_bytes(cols, recipe)]. Unpacking gives exactly the values fp8_fake_quant
// (mxfp8_fake_quant) gives the same tiles, so a quantized row may cross ranks or not alike.
// Tensorwise has no row tiles: fatal.
int64_t fp8_row_bytes(int64_t cols, const Fp8Recipe& recipe);
void fp8_pack_rows(const Context& ctx, const Tensor& packed, const Tensor& in,
                   const Fp8Recipe& recipe);
void fp8_unpack_rows(const Context& ctx, const Tensor& out, const Tensor& packed,
                     const Fp8Recipe& recipe);
// in fake-quantized along its rows as the forward GEMM's activation (1 × 128 or 1 × 32 tiles;
// one scale when tensorwise) into out (which may be in).
void fp8_quantize_rows(const Context& ctx, const Tensor& out, const Tensor& in,
                       const Fp8Recipe& recipe);

// linear.h's ops with FP8 operands as above (the same arguments and outputs).
void fp8_linear_fwd(const Context& ctx, const Tensor& y, const Tensor& x, const Tensor& weight,
                    const Fp8Recipe& recipe, bool accumulate = false);
void fp8_linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                    const Tensor& x, const Tensor& weight, const Fp8Recipe& recipe,
                    bool accumulate_dx = false);
// Bytes of Context::workspace the FP8 linear ops take on `device` for [n, k] weights (an expert's
// [n, k] in a grouped call), forward or backward, whatever the rows; 0 on the CPU.
size_t fp8_linear_workspace_bytes(Device device, int64_t n, int64_t k);
// Whether FP8 GEMMs run on `device` here (always on the CPU; on CUDA a Hopper GPU and a build with
// its kernels), and if not why.
bool fp8_available(Device device, std::string* why);
// grouped_linear.h's ops with FP8 operands.
// x_quantized: x holds fp8_quantize_rows' values already (the FP8 dispatch's rows), used as they
// are.
void fp8_grouped_linear_fwd(const Context& ctx, const Tensor& y, const Tensor& x,
                            const Tensor& weight, const std::vector<int64_t>& counts,
                            const Fp8Recipe& recipe, bool x_quantized = false);
void fp8_grouped_linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight,
                            const Tensor& dy, const Tensor& x, const Tensor& weight,
                            const std::vector<int64_t>& counts, const Fp8Recipe& recipe);

}  // namespace tmt
