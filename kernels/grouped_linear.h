// grouped_linear: the expert GEMMs. Rows arrive grouped by expert (moe_dispatch.h); group e, the
// next counts[e] rows, goes through expert e's weight:
//
//   fwd: y[rows of e] = x[rows of e] @ weight[e]ᵀ        (written)
//   bwd: dx[rows of e] = dy[rows of e] @ weight[e]       (written)
//        dweight[e]   += dy[rows of e]ᵀ @ x[rows of e]   (ACCUMULATED)
//
//   x, dx: [R, K]   y, dy: [R, N]   weight, dweight: [E_local, N, K]   counts: E_local sizes
//   summing to R, on the host (zero is fine: that expert's weight gradient gets nothing and stays
//   bit for bit as it was).
//
// Dtypes: x, weight, y, dy, dx share one: f32|f64 on the CPU, f32|bf16 on CUDA; with bf16
// operands on CUDA dweight may be f32 (fp32 gradient accumulation, the mixed-precision case).
//
// Paths on CUDA (kernels/cuda/grouped_gemm.h), one grouped GEMM a product where they apply:
//   cutlass  (default) CUTLASS's SM90 grouped GEMM: bf16 on an sm_90 GPU with N and K multiples of
//            8; one kernel a product, its per-group sizes and pointers built on the device.
//   cublas   cublasGemmGroupedBatchedEx, bf16 (the comparison path).
//   loop     one cuBLASLt linear call an expert with rows (linear.h): f32, and whatever the grouped
//            paths cannot take.
// TMT_GROUPED_GEMM=cutlass|cublas|loop picks the path, TMT_GROUPED_GEMM_TILE=128x256|128x128|
// pingpong CUTLASS's tile configuration (read once per process). The CPU runs the loop (BLAS).
//
// Workspace: grouped_linear_workspace_bytes(device, E_local), which the caller provides through
// Context::workspace (workspace.h): the larger of the loop's (linear_workspace_bytes) and the
// grouped paths' (per-expert tables, CUTLASS's TMA descriptors, cuBLAS's 32 MiB scratch). It
// depends on the expert count alone, not on R, N or K.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/base/context.h"

namespace tmt {

void grouped_linear_fwd(const Context& ctx, const Tensor& y, const Tensor& x, const Tensor& weight,
                        const std::vector<int64_t>& counts);
void grouped_linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight,
                        const Tensor& dy, const Tensor& x, const Tensor& weight,
                        const std::vector<int64_t>& counts);

// Bytes of Context::workspace the two ops use on `device` for up to `experts` local experts.
size_t grouped_linear_workspace_bytes(Device device, int64_t experts);

}  // namespace tmt
