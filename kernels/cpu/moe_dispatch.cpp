#include "kernels/cpu/moe_dispatch.h"

#include <algorithm>
#include <cstring>

namespace tmt::cpu {
namespace {

template <class T>
void gather(const Tensor& x_perm, const Tensor& x, const DispatchPlan& plan) {
  const int64_t d = x.size(1);
  const T* src = x.ptr<const T>();
  T* dst = x_perm.ptr<T>();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < plan.rows(); ++r) {
    std::memcpy(dst + r * d, src + plan.src_token[static_cast<size_t>(r)] * d,
                static_cast<size_t>(d) * sizeof(T));
  }
}

// The per-token walks below visit each token's slots in k order, so each output row has one writer.
template <class T>
void scatter_add(const Tensor& dx, const Tensor& dx_perm, const DispatchPlan& plan) {
  const int64_t n = dx.size(0), d = dx.size(1),
                k = static_cast<int64_t>(plan.slot.size()) / std::max<int64_t>(n, 1);
  const T* src = dx_perm.ptr<const T>();
  T* dst = dx.ptr<T>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    T* row = dst + t * d;
    std::fill(row, row + d, T(0));
    for (int64_t c = 0; c < k; ++c) {
      const int32_t s = plan.slot[static_cast<size_t>(t * k + c)];
      if (s < 0) continue;
      for (int64_t j = 0; j < d; ++j) row[j] += src[s * d + j];
    }
  }
}

template <class T>
void combine(const Tensor& y, const Tensor& y_perm, const Tensor& topk_w,
             const DispatchPlan& plan) {
  const int64_t n = y.size(0), d = y.size(1), k = topk_w.size(1);
  const T* src = y_perm.ptr<const T>();
  const T* w = topk_w.ptr<const T>();
  T* dst = y.ptr<T>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t c = 0; c < k; ++c) {
      const int32_t s = plan.slot[static_cast<size_t>(t * k + c)];
      if (s < 0) continue;
      for (int64_t j = 0; j < d; ++j) dst[t * d + j] += w[t * k + c] * src[s * d + j];
    }
  }
}

template <class T>
void combine_bwd(const Tensor& dy_perm, const Tensor& dtopk_w, const Tensor& dy,
                 const Tensor& y_perm, const Tensor& topk_w, const DispatchPlan& plan) {
  const int64_t n = dy.size(0), d = dy.size(1), k = topk_w.size(1);
  const T* g = dy.ptr<const T>();
  const T* yp = y_perm.ptr<const T>();
  const T* w = topk_w.ptr<const T>();
  T* dyp = dy_perm.ptr<T>();
  T* dw = dtopk_w.ptr<T>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t c = 0; c < k; ++c) {
      const int32_t s = plan.slot[static_cast<size_t>(t * k + c)];
      if (s < 0) continue;
      T dot = 0;
      for (int64_t j = 0; j < d; ++j) {
        dyp[s * d + j] = w[t * k + c] * g[t * d + j];
        dot += g[t * d + j] * yp[s * d + j];
      }
      dw[t * k + c] += dot;
    }
  }
}

}  // namespace

void make_dispatch_plan(DispatchPlan& plan, const Tensor& topk_idx, int64_t n_experts,
                        int64_t expert_begin, int64_t expert_end, std::optional<int64_t> capacity) {
  const int64_t n = topk_idx.size(0), k = topk_idx.size(1), local = expert_end - expert_begin;
  const int32_t* idx = topk_idx.ptr<const int32_t>();
  plan.counts.assign(static_cast<size_t>(local), 0);
  plan.slot.assign(static_cast<size_t>(n * k), -1);
  plan.src_token.clear();
  // Count the kept assignments per expert (in token, then choice order), then lay the rows out.
  std::vector<int64_t> offset(static_cast<size_t>(local) + 1, 0);
  for (int64_t a = 0; a < n * k; ++a) {
    const int64_t e = idx[a];
    TMT_CHECK(0 <= e && e < n_experts, "expert {} of assignment {} outside [0, {})", e, a,
              n_experts);
    if (e < expert_begin || e >= expert_end) continue;
    int64_t& c = plan.counts[static_cast<size_t>(e - expert_begin)];
    if (!capacity || c < *capacity) ++c;
  }
  for (int64_t e = 0; e < local; ++e)
    offset[static_cast<size_t>(e + 1)] =
        offset[static_cast<size_t>(e)] + plan.counts[static_cast<size_t>(e)];
  plan.src_token.resize(static_cast<size_t>(offset.back()));
  std::vector<int64_t> filled(static_cast<size_t>(local), 0);
  for (int64_t a = 0; a < n * k; ++a) {
    const int64_t e = idx[a] - expert_begin;
    if (e < 0 || e >= local) continue;
    int64_t& f = filled[static_cast<size_t>(e)];
    if (f == plan.counts[static_cast<size_t>(e)]) continue;  // over capacity: dropped
    const int64_t row = offset[static_cast<size_t>(e)] + f++;
    plan.src_token[static_cast<size_t>(row)] = static_cast<int32_t>(a / k);
    plan.slot[static_cast<size_t>(a)] = static_cast<int32_t>(row);
  }
}

void permute_fwd(const Tensor& x_perm, const Tensor& x, const DispatchPlan& plan) {
  if (x.dtype == DType::kF64) return gather<double>(x_perm, x, plan);
  gather<float>(x_perm, x, plan);
}

void permute_bwd(const Tensor& dx, const Tensor& dx_perm, const DispatchPlan& plan) {
  if (dx.dtype == DType::kF64) return scatter_add<double>(dx, dx_perm, plan);
  scatter_add<float>(dx, dx_perm, plan);
}

void unpermute_fwd(const Tensor& y, const Tensor& y_perm, const Tensor& topk_w,
                   const DispatchPlan& plan) {
  if (y.dtype == DType::kF64) return combine<double>(y, y_perm, topk_w, plan);
  combine<float>(y, y_perm, topk_w, plan);
}

void unpermute_bwd(const Tensor& dy_perm, const Tensor& dtopk_w, const Tensor& dy,
                   const Tensor& y_perm, const Tensor& topk_w, const DispatchPlan& plan) {
  if (dy.dtype == DType::kF64)
    return combine_bwd<double>(dy_perm, dtopk_w, dy, y_perm, topk_w, plan);
  combine_bwd<float>(dy_perm, dtopk_w, dy, y_perm, topk_w, plan);
}

}  // namespace tmt::cpu
