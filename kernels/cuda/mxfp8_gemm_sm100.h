// MXFP8 GEMM on Blackwell (sm_100a) through CUTLASS's block-scaled tensor-core kernels: the
// GEMM that fp8.recipe mxfp8 (kernels/fp8.h) defines on the CPU, where the tensor cores apply the
// block scales themselves.
//
//   D [M, N] (bf16, row-major) = A [M, K] · Bᵀ,  B [N, K] (a weight as the linears keep it)
//
// A's and B's rows are e4m3 elements (K bytes a row, K a multiple of 32 and of 16 bytes) with one
// e8m0 scale per 32 elements along K. The scales are not in fp8_pack_rows' order but in the
// tensor cores' interleaved one (CUTLASS's Sm1xxBlkScaledConfig: rows in blocks of 128, scales in
// blocks of 4, each 128 x 4 block stored as 32 x (4 x 4)); mxfp8_scale_bytes gives its padded size.
//
// Compiled for sm_100a when TMT_CUDA_ARCHS includes 100a (TMT_CUTLASS_SM100), and always by the
// build target tmt_sm100_check, which CI builds to prove that it compiles. Not run in this
// version: no Blackwell machine has been lent, and nothing calls it yet (fp8.recipe mxfp8 is
// refused on cuda; the blockwise recipe runs through Hopper's kernels, fp8_linear.h).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tmt::cuda {

struct Mxfp8Gemm {
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;         // device, e4m3 [m, k]
  const void* a_scales = nullptr;  // device, e8m0, mxfp8_scale_bytes(m, k), interleaved
  const void* b = nullptr;         // device, e4m3 [n, k]
  const void* b_scales = nullptr;  // device, e8m0, mxfp8_scale_bytes(n, k), interleaved
  void* d = nullptr;               // device, bf16 [m, n]
  void* stream = nullptr;          // cudaStream_t
};

// Whether this build has the sm_100a kernel (TMT_CUDA_ARCHS includes 100a).
bool mxfp8_gemm_sm100_compiled();
// The bytes of one operand's scales in the interleaved layout: rows rounded up to 128, K / 32
// scales a row rounded up to 4.
size_t mxfp8_scale_bytes(int64_t rows, int64_t k);
// CUTLASS's scratch for this problem (device bytes), and the GEMM itself on g.stream.
size_t mxfp8_gemm_sm100_workspace(const Mxfp8Gemm& g);
void mxfp8_gemm_sm100(const Mxfp8Gemm& g, void* workspace, size_t workspace_bytes);

}  // namespace tmt::cuda
