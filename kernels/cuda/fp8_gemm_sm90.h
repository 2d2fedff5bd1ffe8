// FP8 training's GEMMs on Hopper (sm_90a): CUTLASS's blockwise-scaled FP8 GEMM over the e4m3
// codes and fp32 tile scales of fp8_quantize.h, accumulating in fp32 and promoting the partial
// sums every 128 products (4 tensor-core steps of K = 32), as DeepSeek-V3's recipe asks. The
// numerics are kernels/fp8.h's (fp8.recipe blockwise): the CPU fake-quant reference there is what
// this is held to (tests/kernels/cuda/fp8_gemm_test.cpp).
//
// The GEMM: D [M, N] = A [M, K] · Bᵀ (+ D), A and B e4m3 and K-major (Hopper's FP8 tensor cores
// read both operands K-major), so each training GEMM takes the copies fp8_quantize.h makes:
//
//   GEMM                   A (tiles)                  B (tiles)                     kind
//   forward   y  = x Wᵀ    x rows (1 x 128)           W blocks (128 x 128)          kRowsByBlocks
//   dgrad     dx = dy W    dy rows (1 x 128)          Wᵀ blocks (the transpose)     kRowsByBlocks
//   wgrad     dW += dyᵀ x  dyᵀ columns (128 x 1)      xᵀ columns (128 x 1)          kRowsByRows
//
// The scales are in CUTLASS's MN-major blockwise layout (Sm90BlockwiseScaleConfig), which is the
// order the quantizers write: A's scale of row m and K-block kb at m + M·kb; B's of N-block nb (or
// row n, for kRowsByRows) at nb + ceil(N/g)·kb. kRowsByBlocks writes D in bf16, kRowsByRows in
// f32 (the weight gradient's dW); with accumulate either adds the GEMM to what D holds.
//
// Compiled when TMT_CUDA_ARCHS includes 90a (TMT_CUTLASS_SM90), stubs otherwise. The linears'
// and experts' FP8 passes (fp8_linear.h) call it. Not yet run on a GPU.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tmt::cuda {

enum class Fp8GemmKind : uint8_t {
  kRowsByBlocks,  // A 1 x 128, B 128 x 128; D bf16 (forward, dgrad)
  kRowsByRows,    // A 1 x 128, B 1 x 128; D f32 (wgrad)
};

struct Fp8Gemm {
  Fp8GemmKind kind = Fp8GemmKind::kRowsByBlocks;
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;          // device, e4m3 [m, k]
  const float* a_scales = nullptr;  // device, ceil(k/128) · m
  const void* b = nullptr;          // device, e4m3 [n, k]
  const float* b_scales = nullptr;  // device, ceil(k/128) · ceil(n/128) (or · n: kRowsByRows)
  void* d = nullptr;                // device, [m, n] row-major: bf16, or f32 for kRowsByRows
  bool accumulate = false;          // D += A · Bᵀ
  void* stream = nullptr;           // cudaStream_t
};

// Whether this build has the sm_90a kernels (TMT_CUDA_ARCHS includes 90a).
bool fp8_gemm_sm90_compiled();
// Whether the kernels take this problem (K and N multiples of 16, the TMA's 16-byte rows; sizes
// below 2^31); fp8_gemm refuses the rest.
bool fp8_gemm_supported(const Fp8Gemm& g);
// CUTLASS's scratch for this problem (device bytes), and the GEMM itself on g.stream.
size_t fp8_gemm_workspace(const Fp8Gemm& g);
void fp8_gemm(const Fp8Gemm& g, void* workspace, size_t workspace_bytes);

}  // namespace tmt::cuda
