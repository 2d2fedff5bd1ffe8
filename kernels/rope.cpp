#include "kernels/rope.h"

#include <algorithm>

#include "kernels/base/profiler.h"
#include "kernels/cpu/rope.h"
#if TMT_WITH_CUDA
#include "kernels/cuda/rope.h"
#endif

namespace tmt {
namespace {

// f32|f64 on the CPU; f32|bf16 on CUDA.
bool dtype_ok(const Context& ctx, DType t) {
  return t == DType::kF32 || t == (ctx.device == Device::kCpu ? DType::kF64 : DType::kBF16);
}

void check_tables(const char* op, const Context& ctx, const Tensor& cos, const Tensor& sin) {
  TMT_CHECK(cos.rank() == 2 && cos.shape == sin.shape && cos.dtype == sin.dtype &&
                dtype_ok(ctx, cos.dtype),
            "{}: cos {} and sin {} must be [S_max, Dh/2], one dtype (f32|f64 on cpu, f32|bf16 on "
            "cuda)",
            op, cos.str(), sin.str());
  TMT_CHECK(cos.device == ctx.device && sin.device == ctx.device, "{}: cos {}, sin {} not on {}",
            op, cos.str(), sin.str(), device_name(ctx.device));
}

// y and x: [T, Hx, Dh] with Dr = 2 * cos.size(1) <= Dh; positions [T] i32; scale [S_max] or
// undefined.
void check_apply(const char* op, const Context& ctx, const Tensor& y, const Tensor& x,
                 const Tensor& positions, const Tensor& cos, const Tensor& sin,
                 const RopeApply& how) {
  check_tables(op, ctx, cos, sin);
  TMT_CHECK(x.rank() == 3 && y.shape == x.shape && x.size(2) >= 2 * cos.size(1),
            "{}: {} and {} must be [T, Hx, Dh] with Dh >= Dr = 2 * {}", op, y.str(), x.str(),
            cos.size(1));
  if (how.scale.defined()) {
    TMT_CHECK(how.scale.rank() == 1 && how.scale.size(0) == cos.size(0) &&
                  how.scale.dtype == cos.dtype && how.scale.device == ctx.device,
              "{}: scale {} must be [{}] {} on {}", op, how.scale.str(), cos.size(0),
              dtype_name(cos.dtype), device_name(ctx.device));
  }
  // bf16 activations on CUDA may keep f32 tables (positions far out need more than 8 bits).
  const bool tables_ok =
      x.dtype == cos.dtype ||
      (ctx.device == Device::kCuda && x.dtype == DType::kBF16 && cos.dtype == DType::kF32);
  TMT_CHECK(tables_ok && y.dtype == x.dtype,
            "{}: {}, {} must have the tables' dtype {} (or be bf16 with f32 tables on cuda)", op,
            y.str(), x.str(), dtype_name(cos.dtype));
  TMT_CHECK(
      positions.rank() == 1 && positions.size(0) == x.size(0) && positions.dtype == DType::kI32,
      "{}: positions {} must be i32 [{}]", op, positions.str(), x.size(0));
  TMT_CHECK(x.device == ctx.device && y.device == ctx.device && positions.device == ctx.device,
            "{}: {}, {}, positions {} not all on {}", op, y.str(), x.str(), positions.str(),
            device_name(ctx.device));
}

// Costs: 6 FLOPs a rotated pair (4 products, 2 sums); bytes: in, out and positions once, and
// the table rows of up to T positions (cos and sin). The tables themselves: written once (their
// sines and cosines are not counted as FLOPs).
OpCost apply_cost(const Tensor& out, const Tensor& in, const Tensor& positions, const Tensor& cos,
                  const Tensor& sin) {
  const double share = static_cast<double>(std::min(in.size(0), cos.size(0))) /
                       static_cast<double>(std::max<int64_t>(cos.size(0), 1));
  return {3 * static_cast<double>(in.numel()),
          bytes_of(in, out, positions) + bytes_of(cos, sin) * share};
}

}  // namespace

void rope_tables(const Context& ctx, const Tensor& cos, const Tensor& sin,
                 const RopeParams& params) {
  check_tables("rope_tables", ctx, cos, sin);
  const RopeParams& p = params;
  TMT_CHECK(p.head_dim > 0 && p.rotated() % 2 == 0 && p.rotated() <= p.head_dim &&
                cos.size(1) * 2 == p.rotated(),
            "rope_tables: rotary_dim {} (head_dim {}) must be even, at most head_dim and twice "
            "the tables' width ({})",
            p.rotated(), p.head_dim, cos.size(1));
  TMT_CHECK(
      p.theta > 1.0 && p.mscale >= 0.0 && p.mscale_all_dim >= 0.0 && p.attention_factor >= 0.0,
      "rope_tables: theta {} must be > 1, mscale {}, mscale_all_dim {} and "
      "attention_factor {} >= 0",
      p.theta, p.mscale, p.mscale_all_dim, p.attention_factor);
  if (p.scaling == RopeScalingType::kYarn) {
    TMT_CHECK(
        p.factor > 0.0 && p.original_max_seq_len > 0 && p.beta_fast > 0.0 && p.beta_slow > 0.0,
        "rope_tables: yarn needs factor {} > 0, original_max_seq_len {} > 0, beta_fast {} "
        "> 0, beta_slow {} > 0",
        p.factor, p.original_max_seq_len, p.beta_fast, p.beta_slow);
  }
  const ProfileScope scope(ctx, "rope_tables", {0, bytes_of(cos, sin)});
  if (ctx.device == Device::kCpu) return cpu::rope_tables(cos, sin, params);
#if TMT_WITH_CUDA
  // The frequencies are few: the host computes them once with the reference's formula.
  const std::vector<double> inv_freq = cpu::rope_inv_freq(params);
  return cuda::rope_tables(ctx, cos, sin, inv_freq, cpu::rope_attention_factor(params));
#else
  TMT_CHECK(false, "rope_tables: this build has no CUDA backend");
#endif
}

void rope_position_scale(const Context& ctx, const Tensor& scale, double beta,
                         int64_t original_max_seq_len) {
  TMT_CHECK(scale.rank() == 1 && dtype_ok(ctx, scale.dtype) && scale.device == ctx.device,
            "rope_position_scale: scale {} must be [S_max] (f32|f64 on cpu, f32|bf16 on cuda) on "
            "{}",
            scale.str(), device_name(ctx.device));
  TMT_CHECK(beta >= 0.0 && original_max_seq_len > 0,
            "rope_position_scale: beta {} must be >= 0, original_max_seq_len {} > 0", beta,
            original_max_seq_len);
  const ProfileScope scope(ctx, "rope_position_scale", {0, bytes_of(scale)});
  if (ctx.device == Device::kCpu)
    return cpu::rope_position_scale(scale, beta, original_max_seq_len);
#if TMT_WITH_CUDA
  return cuda::rope_position_scale(ctx, scale, beta, original_max_seq_len);
#else
  TMT_CHECK(false, "rope_position_scale: this build has no CUDA backend");
#endif
}

void rope_fwd(const Context& ctx, const Tensor& out, const Tensor& in, const Tensor& positions,
              const Tensor& cos, const Tensor& sin, const RopeApply& how) {
  check_apply("rope_fwd", ctx, out, in, positions, cos, sin, how);
  const ProfileScope scope(ctx, "rope_fwd", apply_cost(out, in, positions, cos, sin));
  if (ctx.device == Device::kCpu) return cpu::rope_apply(out, in, positions, cos, sin, how, false);
#if TMT_WITH_CUDA
  return cuda::rope_apply(ctx, out, in, positions, cos, sin, how, false);
#else
  TMT_CHECK(false, "rope_fwd: this build has no CUDA backend");
#endif
}

void rope_bwd(const Context& ctx, const Tensor& din, const Tensor& dout, const Tensor& positions,
              const Tensor& cos, const Tensor& sin, const RopeApply& how) {
  check_apply("rope_bwd", ctx, din, dout, positions, cos, sin, how);
  const ProfileScope scope(ctx, "rope_bwd", apply_cost(din, dout, positions, cos, sin));
  if (ctx.device == Device::kCpu) return cpu::rope_apply(din, dout, positions, cos, sin, how, true);
#if TMT_WITH_CUDA
  return cuda::rope_apply(ctx, din, dout, positions, cos, sin, how, true);
#else
  TMT_CHECK(false, "rope_bwd: this build has no CUDA backend");
#endif
}

}  // namespace tmt
