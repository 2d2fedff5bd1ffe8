// The CUDA side of kernels/grouped_linear.h: each pass of the expert GEMMs as one grouped GEMM.
// Group e is the counts[e] rows after those of the groups before it; W is [E, N, K]:
//
//   kFwd:   out = y  [R, N]     y_e   = x_e @ W[e]ᵀ         a = x  [R, K], b = W   (written)
//   kDgrad: out = dx [R, K]     dx_e  = dy_e @ W[e]         a = dy [R, N], b = W   (written)
//   kWgrad: out = dW [E, N, K]  dW[e] += dy_eᵀ @ x_e        a = dy [R, N], b = x   (ACCUMULATED)
//
// bf16 operands, fp32 accumulation; y and dx bf16, dW bf16 or f32 (the mixed-precision case). An
// expert without rows contributes nothing: its rows of y and dx do not exist and dW[e] is left as
// it was. Two paths (the third, one cuBLASLt call per expert, is kernels/grouped_linear.cpp's loop):
//
//   kCutlass  CUTLASS 3 SM90 ptr-array grouped GEMM (TMA, warp-specialized, persistent), one of
//             three tile configurations (CutlassTile). A one-block kernel turns the device array
//             of counts into the per-group problem sizes, pointers and strides in the workspace, so
//             nothing about the groups is known on the host: the kernel is launched on one CTA per
//             SM (CUTLASS sizes its persistent grid from the SM count when it is given no host
//             problem sizes) and every CTA walks the groups' tiles. Needs a binary built for sm_90a
//             (TMT_CUDA_ARCHS) running on an sm_90 GPU, rows of 16-byte multiples (N and K
//             multiples of 8) and 16-byte aligned tensors.
//   kCublas   cublasGemmGroupedBatchedEx (cuBLAS 13.1): host counts, experts of equal row count
//             batched in one group, per-group sizes on the host, pointer arrays uploaded to the
//             workspace, cuBLAS's own scratch pointed at the workspace (cublasSetWorkspace).
//             Whether it takes bf16 operands with an f32 output (wgrad into f32 dW) is settled at
//             run time: if cuBLAS refuses, that pass runs through the loop from then on (one
//             warning).
//
// Counts: the entry point with a device counts tensor (i64 [E]) is what a device-side dispatch plan
// will call; the host-vector one copies the counts into the workspace first (cudaMemcpyAsync on
// ctx.stream; this upload goes away with the device-side plan). Device counts must be
// non-negative and sum to R: the kernel cannot report an error, so it clamps (a negative count is
// 0, groups beyond row R are cut at R).
//
// Choosing a path (the GPU benchmark decides the default): TMT_GROUPED_GEMM=cutlass|cublas|loop
// (default cutlass) and TMT_GROUPED_GEMM_TILE=128x256|128x128|pingpong (default 128x256), read
// once per process. A path that cannot run a call (f32 operands, another GPU, misaligned rows)
// leaves it to the loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/base/context.h"

namespace tmt::cuda {

enum class GroupedPass : uint8_t { kFwd, kDgrad, kWgrad };
enum class GroupedGemmPath : uint8_t { kCutlass, kCublas, kLoop };
// Thread-block tile M x N x 64 and schedule; every configuration uses 2x1 clusters.
enum class CutlassTile : uint8_t {
  kCooperative128x256,  // "128x256": two consumer warp groups share one 128x256 tile
  kCooperative128x128,  // "128x128": the same on 128x128 tiles
  kPingpong128x128,     // "pingpong": two consumer warp groups on alternate 128x128 tiles
};

struct GroupedGemmChoice {
  GroupedGemmPath path = GroupedGemmPath::kCutlass;
  CutlassTile tile = CutlassTile::kCooperative128x256;
};

// TMT_GROUPED_GEMM and TMT_GROUPED_GEMM_TILE, read on first use; another value is fatal.
GroupedGemmChoice requested_grouped_gemm();

// Whether `path` can run this pass on these tensors here; the reason in *why when it cannot.
bool grouped_gemm_supported(GroupedGemmPath path, GroupedPass pass, const Tensor& out,
                            const Tensor& a, const Tensor& b, int64_t experts, std::string* why);

// One pass, counts on the host (path kCutlass or kCublas; the caller checked
// grouped_gemm_supported). False, with nothing done, only when cuBLAS refused an f32 output on
// this call: the caller then runs the pass through the loop (and grouped_gemm_supported says no
// to it from then on).
bool grouped_gemm(const Context& ctx, GroupedGemmChoice choice, GroupedPass pass, const Tensor& out,
                  const Tensor& a, const Tensor& b, const std::vector<int64_t>& counts);
// One pass through CUTLASS, counts i64 [E] on the device.
void grouped_gemm(const Context& ctx, CutlassTile tile, GroupedPass pass, const Tensor& out,
                  const Tensor& a, const Tensor& b, const Tensor& counts);

// Bytes of Context::workspace either path uses for up to `experts` groups: the tables (counts,
// problem sizes, pointers, strides: under 100 bytes an expert) and CUTLASS's own workspace (TMA
// descriptors, a few per SM) or cuBLAS's scratch (32 MiB).
size_t grouped_gemm_workspace_bytes(int64_t experts);

// The most experts one call takes (the table kernel is one block, a thread an expert).
constexpr int64_t kGroupedGemmMaxExperts = 1024;

}  // namespace tmt::cuda
