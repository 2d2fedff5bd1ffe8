// The CUDA side of kernels/moe_dispatch.h: token rows f32|bf16, topk_w and dtopk_w f32 (the
// router's dtype), sums in fp32. The DispatchPlan stays on the host; each op uploads the array it
// reads (src_token or slot) into Context::workspace, which must hold moe_dispatch_workspace_bytes
// of the plan's assignments.
#pragma once

#include "kernels/moe_dispatch.h"

namespace tmt::cuda {

void permute_fwd(const Context& ctx, const Tensor& x_perm, const Tensor& x,
                 const DispatchPlan& plan);
void permute_bwd(const Context& ctx, const Tensor& dx, const Tensor& dx_perm,
                 const DispatchPlan& plan);
void unpermute_fwd(const Context& ctx, const Tensor& y, const Tensor& y_perm, const Tensor& topk_w,
                   const DispatchPlan& plan);
void unpermute_bwd(const Context& ctx, const Tensor& dy_perm, const Tensor& dtopk_w,
                   const Tensor& dy, const Tensor& y_perm, const Tensor& topk_w,
                   const DispatchPlan& plan);

// The workspace of the four ops for plans of up to `assignments` slot entries.
size_t moe_dispatch_workspace_bytes(int64_t assignments);

}  // namespace tmt::cuda
