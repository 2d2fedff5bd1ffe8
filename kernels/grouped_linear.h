// grouped_linear: the expert GEMMs. Rows arrive grouped by expert (moe_dispatch.h); group e, the
// next counts[e] rows, goes through expert e's weight:
//
//   fwd: y[rows of e] = x[rows of e] @ weight[e]ᵀ
//   bwd: dx[rows of e] = dy[rows of e] @ weight[e]       (written)
//        dweight[e]   += dy[rows of e]ᵀ @ x[rows of e]   (accumulated)
//
//   x, dx: [R, K]   y, dy: [R, N]   weight, dweight: [E_local, N, K]   counts: E_local sizes
//   summing to R, on the host (zero is fine: that expert's weight gradient gets nothing).
// Workspace: that of the linear calls it makes, one a group (linear.h), which the caller provides
// through Context::workspace (workspace.h).
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

// Bytes of Context::workspace the two ops use on `device`: linear_workspace_bytes(device).
size_t grouped_linear_workspace_bytes(Device device);

}  // namespace tmt
