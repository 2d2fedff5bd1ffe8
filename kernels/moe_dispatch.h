// moe_dispatch: moving tokens to their experts and the experts' outputs back.
//
// A DispatchPlan, built on the host from the router's choices, lists the (token, choice)
// assignments that go to this rank's experts [expert_begin, expert_end), grouped by expert in
// increasing order and, within an expert, by increasing token then choice. Row r of the permuted
// matrix copies token src_token[r]; slot[t·K + k] is the row of assignment (t, k), or -1 when its
// expert is elsewhere or it was dropped.
//
// Capacity (optional): each expert keeps its first `capacity` assignments in that order — earlier
// tokens win — and drops the rest. A dropped assignment contributes nothing; a token whose every
// choice was dropped passes through the layer on its residual alone.
//
//   x: [T, D], x_perm: [R, D]
//   permute_fwd:   x_perm[r] = x[src_token[r]]                               (written)
//   permute_bwd:   dx[t] = Σ_{r: src_token[r] = t} dx_perm[r]                (written)
//   unpermute_fwd: y[t] += Σ_k topk_w[t, k] · y_perm[slot[t, k]]             (ACCUMULATED into y)
//   unpermute_bwd: dy_perm[slot[t, k]] = topk_w[t, k] · dy[t]                (written)
//                  dtopk_w[t, k] += dy[t] · y_perm[slot[t, k]]                (ACCUMULATED)
//
// Workspace: on CUDA each op uploads the index array it reads (src_token or slot) into
// moe_dispatch_workspace_bytes, which the caller provides through Context::workspace
// (workspace.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "kernels/base/context.h"

namespace tmt {

struct DispatchPlan {
  std::vector<int64_t> counts;     // rows per local expert
  std::vector<int32_t> src_token;  // per permuted row
  std::vector<int32_t> slot;       // per assignment, [T, K] row-major; -1 = not here
  int64_t rows() const { return static_cast<int64_t>(src_token.size()); }
};

// topk_idx: i32 [T, K] on the host or a device; a device one is first copied to the host (a
// blocking copy that waits for the work queued before it). The plan itself is always host data;
// the CUDA ops upload the index arrays they read into the caller's workspace. Refills `plan` (its
// vectors keep their capacity between steps).
void make_dispatch_plan(DispatchPlan& plan, const Tensor& topk_idx, int64_t n_experts,
                        int64_t expert_begin, int64_t expert_end, std::optional<int64_t> capacity);
DispatchPlan make_dispatch_plan(const Tensor& topk_idx, int64_t n_experts, int64_t expert_begin,
                                int64_t expert_end, std::optional<int64_t> capacity);

void permute_fwd(const Context& ctx, const Tensor& x_perm, const Tensor& x,
                 const DispatchPlan& plan);
void permute_bwd(const Context& ctx, const Tensor& dx, const Tensor& dx_perm,
                 const DispatchPlan& plan);
void unpermute_fwd(const Context& ctx, const Tensor& y, const Tensor& y_perm, const Tensor& topk_w,
                   const DispatchPlan& plan);
void unpermute_bwd(const Context& ctx, const Tensor& dy_perm, const Tensor& dtopk_w,
                   const Tensor& dy, const Tensor& y_perm, const Tensor& topk_w,
                   const DispatchPlan& plan);

// Bytes of Context::workspace that the four ops use on `device` for plans of up to `assignments`
// entries in slot (T·K; rows() never exceeds it in a plan make_dispatch_plan builds): on CUDA
// 4 · assignments (one i32 index array), 0 on the CPU.
size_t moe_dispatch_workspace_bytes(Device device, int64_t assignments);

}  // namespace tmt
