#pragma once

#include "kernels/moe_dispatch.h"

namespace tmt::cpu {

void make_dispatch_plan(DispatchPlan& plan, const Tensor& topk_idx, int64_t n_experts,
                        int64_t expert_begin, int64_t expert_end, std::optional<int64_t> capacity);
void permute_fwd(const Tensor& x_perm, const Tensor& x, const DispatchPlan& plan);
void permute_bwd(const Tensor& dx, const Tensor& dx_perm, const DispatchPlan& plan);
void unpermute_fwd(const Tensor& y, const Tensor& y_perm, const Tensor& topk_w,
                   const DispatchPlan& plan);
void unpermute_bwd(const Tensor& dy_perm, const Tensor& dtopk_w, const Tensor& dy,
                   const Tensor& y_perm, const Tensor& topk_w, const DispatchPlan& plan);

}  // namespace tmt::cpu
