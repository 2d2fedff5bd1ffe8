#include "kernels/moe_dispatch.h"

#include <algorithm>
#include <vector>

#include "kernels/base/profiler.h"
#include "kernels/cpu/moe_dispatch.h"
#if TMT_WITH_CUDA
#include "kernels/cuda/moe_dispatch.h"
#include "kernels/cuda/runtime.h"
#endif

namespace tmt {
namespace {

void check_rows(const char* op, const Context& ctx, const Tensor& perm, const Tensor& tokens,
                const DispatchPlan& plan) {
  TMT_CHECK(perm.rank() == 2 && tokens.rank() == 2 && perm.size(1) == tokens.size(1) &&
                perm.size(0) == plan.rows() && perm.dtype == tokens.dtype &&
                (perm.dtype == DType::kF32 ||
                 perm.dtype == (ctx.device == Device::kCpu ? DType::kF64 : DType::kBF16)),
            "{}: permuted {} and token rows {} (f32|f64 on cpu, f32|bf16 on cuda) for a plan of {} "
            "rows",
            op, perm.str(), tokens.str(), plan.rows());
  TMT_CHECK(perm.device == ctx.device && tokens.device == ctx.device, "{}: tensors not on {}", op,
            device_name(ctx.device));
}

// topk_w: the tokens' dtype on the CPU, f32 (the router's) on CUDA.
void check_weights(const char* op, const Context& ctx, const Tensor& topk_w, const Tensor& tokens,
                   const DispatchPlan& plan) {
  TMT_CHECK(topk_w.rank() == 2 && topk_w.size(0) == tokens.size(0) &&
                topk_w.numel() == static_cast<int64_t>(plan.slot.size()) &&
                topk_w.dtype == (ctx.device == Device::kCpu ? tokens.dtype : DType::kF32) &&
                topk_w.device == ctx.device,
            "{}: topk_w {} for {} tokens {} and {} assignments", op, topk_w.str(), tokens.size(0),
            tokens.str(), plan.slot.size());
}

// Costs, with R permuted rows of width D and T tokens: the index arrays the op reads (src_token
// R, slot T·K, i32), every tensor once (accumulated ones twice) — permute_fwd only the up to
// min(R, T) token rows that have a copy here. One FLOP an element for the backward sums (R·D), two
// for the weighted sums (unpermute), three for unpermute_bwd (the scaled rows and the dot
// products for dtopk_w).
double rows_bytes(const DispatchPlan& plan) { return 4.0 * static_cast<double>(plan.rows()); }
double slot_bytes(const DispatchPlan& plan) { return 4.0 * static_cast<double>(plan.slot.size()); }
double perm_elements(const Tensor& perm) { return static_cast<double>(perm.numel()); }

double token_rows_read(const Tensor& x, const DispatchPlan& plan) {
  if (x.size(0) == 0) return 0;
  return bytes_of(x) * static_cast<double>(std::min(plan.rows(), x.size(0))) /
         static_cast<double>(x.size(0));
}

}  // namespace

void make_dispatch_plan(DispatchPlan& plan, const Tensor& topk_idx, int64_t n_experts,
                        int64_t expert_begin, int64_t expert_end, std::optional<int64_t> capacity) {
  TMT_CHECK(topk_idx.rank() == 2 && topk_idx.dtype == DType::kI32,
            "make_dispatch_plan: topk_idx {} must be i32 [T, K]", topk_idx.str());
  TMT_CHECK(0 <= expert_begin && expert_begin <= expert_end && expert_end <= n_experts,
            "make_dispatch_plan: local experts [{}, {}) of {}", expert_begin, expert_end,
            n_experts);
  TMT_CHECK(!capacity || *capacity >= 0, "make_dispatch_plan: negative capacity");
  if (topk_idx.device == Device::kCpu) {
    return cpu::make_dispatch_plan(plan, topk_idx, n_experts, expert_begin, expert_end, capacity);
  }
#if TMT_WITH_CUDA
  // A device topk_idx is copied to the host first (a blocking copy: it waits for the work queued
  // before it); the buffer keeps its capacity between calls, as the plan's vectors do.
  thread_local std::vector<int32_t> host_idx;
  host_idx.resize(static_cast<size_t>(topk_idx.numel()));
  cuda::copy(host_idx.data(), topk_idx.data, topk_idx.nbytes());
  Tensor on_host = topk_idx;
  on_host.data = host_idx.data();
  on_host.device = Device::kCpu;
  cpu::make_dispatch_plan(plan, on_host, n_experts, expert_begin, expert_end, capacity);
#else
  TMT_CHECK(false, "make_dispatch_plan: topk_idx {} on a device this build lacks", topk_idx.str());
#endif
}

DispatchPlan make_dispatch_plan(const Tensor& topk_idx, int64_t n_experts, int64_t expert_begin,
                                int64_t expert_end, std::optional<int64_t> capacity) {
  DispatchPlan plan;
  make_dispatch_plan(plan, topk_idx, n_experts, expert_begin, expert_end, capacity);
  return plan;
}

size_t moe_dispatch_workspace_bytes(Device device, int64_t assignments) {
  TMT_CHECK(assignments >= 0, "moe_dispatch_workspace_bytes: {} assignments", assignments);
  if (device == Device::kCpu) return 0;
#if TMT_WITH_CUDA
  return cuda::moe_dispatch_workspace_bytes(assignments);
#else
  TMT_CHECK(false, "moe_dispatch_workspace_bytes: this build has no CUDA backend");
  return 0;
#endif
}

void permute_fwd(const Context& ctx, const Tensor& x_perm, const Tensor& x,
                 const DispatchPlan& plan) {
  check_rows("permute_fwd", ctx, x_perm, x, plan);
  const ProfileScope scope(ctx, "permute_fwd",
                           {0, bytes_of(x_perm) + token_rows_read(x, plan) + rows_bytes(plan)});
  if (ctx.device == Device::kCpu) return cpu::permute_fwd(x_perm, x, plan);
#if TMT_WITH_CUDA
  return cuda::permute_fwd(ctx, x_perm, x, plan);
#else
  TMT_CHECK(false, "permute_fwd: this build has no CUDA backend");
#endif
}

void permute_bwd(const Context& ctx, const Tensor& dx, const Tensor& dx_perm,
                 const DispatchPlan& plan) {
  check_rows("permute_bwd", ctx, dx_perm, dx, plan);
  const ProfileScope scope(ctx, "permute_bwd",
                           {perm_elements(dx_perm), bytes_of(dx_perm, dx) + rows_bytes(plan)});
  if (ctx.device == Device::kCpu) return cpu::permute_bwd(dx, dx_perm, plan);
#if TMT_WITH_CUDA
  return cuda::permute_bwd(ctx, dx, dx_perm, plan);
#else
  TMT_CHECK(false, "permute_bwd: this build has no CUDA backend");
#endif
}

void unpermute_fwd(const Context& ctx, const Tensor& y, const Tensor& y_perm, const Tensor& topk_w,
                   const DispatchPlan& plan) {
  check_rows("unpermute_fwd", ctx, y_perm, y, plan);
  check_weights("unpermute_fwd", ctx, topk_w, y, plan);
  const ProfileScope scope(
      ctx, "unpermute_fwd",
      {2 * perm_elements(y_perm), bytes_of(y_perm, topk_w) + 2 * bytes_of(y) + slot_bytes(plan)});
  if (ctx.device == Device::kCpu) return cpu::unpermute_fwd(y, y_perm, topk_w, plan);
#if TMT_WITH_CUDA
  return cuda::unpermute_fwd(ctx, y, y_perm, topk_w, plan);
#else
  TMT_CHECK(false, "unpermute_fwd: this build has no CUDA backend");
#endif
}

void unpermute_bwd(const Context& ctx, const Tensor& dy_perm, const Tensor& dtopk_w,
                   const Tensor& dy, const Tensor& y_perm, const Tensor& topk_w,
                   const DispatchPlan& plan) {
  check_rows("unpermute_bwd", ctx, dy_perm, dy, plan);
  check_rows("unpermute_bwd", ctx, y_perm, dy, plan);
  check_weights("unpermute_bwd", ctx, topk_w, dy, plan);
  TMT_CHECK(dtopk_w.shape == topk_w.shape && dtopk_w.dtype == topk_w.dtype,
            "unpermute_bwd: dtopk_w {} for {}", dtopk_w.str(), topk_w.str());
  const ProfileScope scope(
      ctx, "unpermute_bwd",
      {3 * perm_elements(y_perm),
       bytes_of(dy, y_perm, topk_w, dy_perm) + 2 * bytes_of(dtopk_w) + slot_bytes(plan)});
  if (ctx.device == Device::kCpu)
    return cpu::unpermute_bwd(dy_perm, dtopk_w, dy, y_perm, topk_w, plan);
#if TMT_WITH_CUDA
  return cuda::unpermute_bwd(ctx, dy_perm, dtopk_w, dy, y_perm, topk_w, plan);
#else
  TMT_CHECK(false, "unpermute_bwd: this build has no CUDA backend");
#endif
}

}  // namespace tmt
