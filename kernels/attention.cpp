#include "kernels/attention.h"

#include <algorithm>

#include "kernels/base/profiler.h"
#include "kernels/cpu/attention.h"
#if TMT_WITH_CUDA
#include "kernels/cuda/attention.h"
#endif

namespace tmt {
namespace {

void check_args(const char* op, const Context& ctx, const Tensor& q, const Tensor& k,
                const Tensor& v, const Tensor& out, const Tensor& lse, const AttentionParams& p) {
  TMT_CHECK(
      q.rank() == 4 && k.rank() == 4 && v.rank() == 4 && out.rank() == 4 &&
          q.size(0) == k.size(0) && q.size(1) <= k.size(1) && q.size(3) == k.size(3) &&
          k.size(2) > 0 && q.size(2) % k.size(2) == 0 && v.size(0) == k.size(0) &&
          v.size(1) == k.size(1) && v.size(2) == k.size(2) && out.size(0) == q.size(0) &&
          out.size(1) == q.size(1) && out.size(2) == q.size(2) && out.size(3) == v.size(3),
      "{}: q {}, k {}, v {}, out {} are not [B, S, H, Dqk], [B, Sk, Hk, Dqk], [B, Sk, Hk, Dv], "
      "[B, S, H, Dv] with Hk dividing H and S <= Sk",
      op, q.str(), k.str(), v.str(), out.str());
  TMT_CHECK(lse.shape == (Shape{q.size(0), q.size(2), q.size(1)}),
            "{}: lse {} is not [B, H, S] for q {}", op, lse.str(), q.str());
  for (const Tensor* t : {&q, &k, &v, &out}) {
    TMT_CHECK(t->dtype == q.dtype && t->device == ctx.device, "{}: {} does not match q {} on {}",
              op, t->str(), q.str(), device_name(ctx.device));
  }
  // CPU: one dtype, f32|f64, lse included. CUDA: f32|bf16 with lse always f32.
  const bool cpu = ctx.device == Device::kCpu;
  TMT_CHECK(cpu ? (q.dtype == DType::kF32 || q.dtype == DType::kF64) && lse.dtype == q.dtype
                : (q.dtype == DType::kF32 || q.dtype == DType::kBF16) && lse.dtype == DType::kF32,
            "{}: q {}, lse {}: f32|f64 (lse alike) on cpu, f32|bf16 (lse f32) on cuda", op, q.str(),
            lse.str());
  TMT_CHECK(lse.device == ctx.device, "{}: lse {} not on {}", op, lse.str(),
            device_name(ctx.device));
#if TMT_WITH_CUDA
  TMT_CHECK(
      cpu || (q.size(3) <= cuda::kAttentionMaxHeadDim && v.size(3) <= cuda::kAttentionMaxHeadDim),
      "{}: head dims {} (q, k), {} (v) over the CUDA kernels' {}", op, q.size(3), v.size(3),
      cuda::kAttentionMaxHeadDim);
#endif
  TMT_CHECK(p.window >= 0, "{}: negative window {}", op, p.window);
}

// Costs, per query-key pair a head computes (Σ_i min(i + 1 + Sk - S, window) over the S
// queries): forward q·k and p·v, 2·Dqk + 2·Dv FLOPs; backward q·k recomputed, dp = dout·v, dv, dq
// and dk, 6·Dqk + 4·Dv. Bytes: the forward reads q, k, v and writes out, lse; the backward reads
// those five and dout and writes dq, dk, dv.
double visible_pairs(const Tensor& q, const Tensor& k, int64_t window) {
  const int64_t s = q.size(1), first = k.size(1) - s + 1;  // query 0 sees `first` keys uncut
  const int64_t w = window == 0 ? k.size(1) : window;
  // Σ over x = first .. first + S - 1 of min(x, w): those below w, then S - that many at w.
  const int64_t below = std::clamp<int64_t>(w - first, 0, s);
  const double per_head =
      static_cast<double>(below) * static_cast<double>(2 * first + below - 1) / 2 +
      static_cast<double>(s - below) * static_cast<double>(w);
  return static_cast<double>(q.size(0) * q.size(2)) * per_head;
}

OpCost fwd_cost(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                const Tensor& v, const AttentionParams& p) {
  const auto dqk = static_cast<double>(q.size(3)), dv = static_cast<double>(v.size(3));
  return {(2 * dqk + 2 * dv) * visible_pairs(q, k, p.window), bytes_of(q, k, v, out, lse)};
}

// dq, dk, dv and dout have the shapes and dtype of q, k, v and out.
OpCost bwd_cost(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                const Tensor& v, const AttentionParams& p) {
  const auto dqk = static_cast<double>(q.size(3)), dv = static_cast<double>(v.size(3));
  return {(6 * dqk + 4 * dv) * visible_pairs(q, k, p.window),
          2 * bytes_of(q, k, v, out) + bytes_of(lse)};
}

void check_query(const char* op, const AttentionShape& s, const AttentionParams& p) {
  TMT_CHECK(p.window >= 0, "{}: negative window {}", op, p.window);
  TMT_CHECK(s.batch >= 0 && s.seq >= 0 && s.heads >= 0 && s.kv_heads >= 0 && s.head_dim_qk >= 0 &&
                s.head_dim_v >= 0 && (s.kv_heads == 0 ? s.heads == 0 : s.heads % s.kv_heads == 0) &&
                s.kv_seq >= 0 && s.seq <= s.keys(),
            "{}: B {} S {} Sk {} H {} Hk {} Dqk {} Dv {} is not a shape with Hk dividing H and S "
            "<= Sk",
            op, s.batch, s.seq, s.keys(), s.heads, s.kv_heads, s.head_dim_qk, s.head_dim_v);
}

}  // namespace

AttentionShape attention_shape(const Tensor& q, const Tensor& v) {
  return {q.size(0), q.size(1), q.size(2), v.size(2), q.size(3), v.size(3), q.dtype, v.size(1)};
}

size_t attention_fwd_workspace_bytes(Device device, const AttentionShape& shape,
                                     const AttentionParams& params) {
  check_query("attention_fwd_workspace_bytes", shape, params);
  if (device == Device::kCpu) return 0;
#if TMT_WITH_CUDA
  return cuda::attention_fwd_workspace_bytes(shape, params);
#else
  TMT_CHECK(false, "attention_fwd_workspace_bytes: this build has no CUDA backend");
  return 0;
#endif
}

size_t attention_bwd_workspace_bytes(Device device, const AttentionShape& shape,
                                     const AttentionParams& params) {
  check_query("attention_bwd_workspace_bytes", shape, params);
  if (device == Device::kCpu) return 0;
#if TMT_WITH_CUDA
  return cuda::attention_bwd_workspace_bytes(shape, params);
#else
  TMT_CHECK(false, "attention_bwd_workspace_bytes: this build has no CUDA backend");
  return 0;
#endif
}

void attention_fwd(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                   const Tensor& k, const Tensor& v, const AttentionParams& params) {
  check_args("attention_fwd", ctx, q, k, v, out, lse, params);
  const ProfileScope scope(ctx, "attention_fwd", fwd_cost(out, lse, q, k, v, params));
  if (ctx.device == Device::kCpu) return cpu::attention_fwd(out, lse, q, k, v, params);
#if TMT_WITH_CUDA
  return cuda::attention_fwd(ctx, out, lse, q, k, v, params);
#else
  TMT_CHECK(false, "attention_fwd: this build has no CUDA backend");
#endif
}

void attention_bwd(const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                   const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& lse, const AttentionParams& params) {
  check_args("attention_bwd", ctx, q, k, v, out, lse, params);
  TMT_CHECK(dq.shape == q.shape && dk.shape == k.shape && dv.shape == v.shape &&
                dout.shape == out.shape && dq.dtype == q.dtype && dk.dtype == q.dtype &&
                dv.dtype == q.dtype && dout.dtype == q.dtype,
            "attention_bwd: dq {}, dk {}, dv {}, dout {} do not match q {}, k {}, v {}, out {}",
            dq.str(), dk.str(), dv.str(), dout.str(), q.str(), k.str(), v.str(), out.str());
  const ProfileScope scope(ctx, "attention_bwd", bwd_cost(out, lse, q, k, v, params));
  if (ctx.device == Device::kCpu)
    return cpu::attention_bwd(dq, dk, dv, dout, q, k, v, out, lse, params);
#if TMT_WITH_CUDA
  return cuda::attention_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, params);
#else
  TMT_CHECK(false, "attention_bwd: this build has no CUDA backend");
#endif
}

}  // namespace tmt
