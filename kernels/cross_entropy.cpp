#include "kernels/cross_entropy.h"

#include "kernels/base/profiler.h"
#include "kernels/cpu/cross_entropy.h"
#if TMT_WITH_CUDA
#include "kernels/cuda/cross_entropy.h"
#endif

namespace tmt {
namespace {

bool is_f32_or_f64(DType t) { return t == DType::kF32 || t == DType::kF64; }

// logits: f32|f64 on the CPU, f32|bf16 on CUDA.
void check_logits(const char* op, const Context& ctx, const Tensor& logits) {
  const bool dtype_ok = logits.dtype == DType::kF32 ||
                        logits.dtype == (ctx.device == Device::kCpu ? DType::kF64 : DType::kBF16);
  TMT_CHECK(logits.rank() == 2 && dtype_ok && logits.device == ctx.device,
            "{}: logits {} must be [T, V] f32|f64 (cpu) or f32|bf16 (cuda) on {}", op, logits.str(),
            device_name(ctx.device));
}

// A per-row vector: [T] f32|f64 (or i32 for targets) on ctx.device.
void check_row(const char* op, const Context& ctx, const Tensor& v, int64_t n_tokens,
               const char* name, bool integer = false) {
  const bool dtype_ok = integer ? v.dtype == DType::kI32 : is_f32_or_f64(v.dtype);
  TMT_CHECK(v.rank() == 1 && v.size(0) == n_tokens && dtype_ok && v.device == ctx.device,
            "{}: {} {} must be [{}] {} on {}", op, name, v.str(), n_tokens,
            integer ? "i32" : "f32|f64", device_name(ctx.device));
}

void check_dlogits(const char* op, const Tensor& dlogits, const Tensor& logits) {
  TMT_CHECK(dlogits.shape == logits.shape && dlogits.dtype == logits.dtype &&
                dlogits.device == logits.device,
            "{}: dlogits {} does not match logits {}", op, dlogits.str(), logits.str());
}

// Costs, per logit: the max 1 FLOP, exp(l - max) and its sum 3 more, the gradient's exp, division
// and scale 4. Bytes: every tensor once (the logits once, though a kernel may sweep them twice),
// and for target_logit one logit a row.
double logits_count(const Tensor& logits) { return static_cast<double>(logits.numel()); }

}  // namespace

void cross_entropy(const Context& ctx, const Tensor& losses, const Tensor& dlogits,
                   const Tensor& logits, const Tensor& targets, double grad_scale) {
  const char* op = "cross_entropy";
  check_logits(op, ctx, logits);
  check_row(op, ctx, losses, logits.size(0), "losses");
  check_row(op, ctx, targets, logits.size(0), "targets", /*integer=*/true);
  if (dlogits.defined()) check_dlogits(op, dlogits, logits);
  const ProfileScope scope(ctx, op,
                           {(dlogits.defined() ? 8 : 4) * logits_count(logits),
                            bytes_of(logits, dlogits, losses, targets)});
  if (ctx.device == Device::kCpu) {
    return cpu::cross_entropy(losses, dlogits, logits, targets, grad_scale);
  }
#if TMT_WITH_CUDA
  return cuda::cross_entropy(ctx, losses, dlogits, logits, targets, grad_scale);
#else
  TMT_CHECK(false, "cross_entropy: this build has no CUDA backend");
#endif
}

void cross_entropy_row_max(const Context& ctx, const Tensor& row_max, const Tensor& logits) {
  const char* op = "cross_entropy_row_max";
  check_logits(op, ctx, logits);
  check_row(op, ctx, row_max, logits.size(0), "row_max");
  const ProfileScope scope(ctx, op, {logits_count(logits), bytes_of(logits, row_max)});
  if (ctx.device == Device::kCpu) return cpu::cross_entropy_row_max(row_max, logits);
#if TMT_WITH_CUDA
  return cuda::cross_entropy_row_max(ctx, row_max, logits);
#else
  TMT_CHECK(false, "cross_entropy_row_max: this build has no CUDA backend");
#endif
}

void cross_entropy_sum_exp(const Context& ctx, const Tensor& sum_exp, const Tensor& logits,
                           const Tensor& row_max) {
  const char* op = "cross_entropy_sum_exp";
  check_logits(op, ctx, logits);
  check_row(op, ctx, sum_exp, logits.size(0), "sum_exp");
  check_row(op, ctx, row_max, logits.size(0), "row_max");
  const ProfileScope scope(ctx, op, {3 * logits_count(logits), bytes_of(logits, row_max, sum_exp)});
  if (ctx.device == Device::kCpu) return cpu::cross_entropy_sum_exp(sum_exp, logits, row_max);
#if TMT_WITH_CUDA
  return cuda::cross_entropy_sum_exp(ctx, sum_exp, logits, row_max);
#else
  TMT_CHECK(false, "cross_entropy_sum_exp: this build has no CUDA backend");
#endif
}

void cross_entropy_target_logit(const Context& ctx, const Tensor& target_logit,
                                const Tensor& logits, const Tensor& targets, int64_t vocab_start) {
  const char* op = "cross_entropy_target_logit";
  check_logits(op, ctx, logits);
  check_row(op, ctx, target_logit, logits.size(0), "target_logit");
  check_row(op, ctx, targets, logits.size(0), "targets", /*integer=*/true);
  const double one_a_row = static_cast<double>(logits.size(0) * dtype_size(logits.dtype));
  const ProfileScope scope(ctx, op, {0, one_a_row + bytes_of(targets, target_logit)});
  if (ctx.device == Device::kCpu) {
    return cpu::cross_entropy_target_logit(target_logit, logits, targets, vocab_start);
  }
#if TMT_WITH_CUDA
  return cuda::cross_entropy_target_logit(ctx, target_logit, logits, targets, vocab_start);
#else
  TMT_CHECK(false, "cross_entropy_target_logit: this build has no CUDA backend");
#endif
}

void cross_entropy_loss(const Context& ctx, const Tensor& losses, const Tensor& row_max,
                        const Tensor& sum_exp, const Tensor& target_logit, const Tensor& targets) {
  const char* op = "cross_entropy_loss";
  const int64_t n_tokens = losses.rank() == 1 ? losses.size(0) : -1;
  check_row(op, ctx, losses, n_tokens, "losses");
  check_row(op, ctx, row_max, n_tokens, "row_max");
  check_row(op, ctx, sum_exp, n_tokens, "sum_exp");
  check_row(op, ctx, target_logit, n_tokens, "target_logit");
  check_row(op, ctx, targets, n_tokens, "targets", /*integer=*/true);
  const ProfileScope scope(ctx, op,
                           {3 * static_cast<double>(n_tokens),
                            bytes_of(losses, row_max, sum_exp, target_logit, targets)});
  if (ctx.device == Device::kCpu) {
    return cpu::cross_entropy_loss(losses, row_max, sum_exp, target_logit, targets);
  }
#if TMT_WITH_CUDA
  return cuda::cross_entropy_loss(ctx, losses, row_max, sum_exp, target_logit, targets);
#else
  TMT_CHECK(false, "cross_entropy_loss: this build has no CUDA backend");
#endif
}

void cross_entropy_grad(const Context& ctx, const Tensor& dlogits, const Tensor& logits,
                        const Tensor& targets, const Tensor& row_max, const Tensor& sum_exp,
                        int64_t vocab_start, double grad_scale) {
  const char* op = "cross_entropy_grad";
  check_logits(op, ctx, logits);
  check_dlogits(op, dlogits, logits);
  check_row(op, ctx, targets, logits.size(0), "targets", /*integer=*/true);
  check_row(op, ctx, row_max, logits.size(0), "row_max");
  check_row(op, ctx, sum_exp, logits.size(0), "sum_exp");
  const ProfileScope scope(
      ctx, op, {4 * logits_count(logits), bytes_of(logits, dlogits, targets, row_max, sum_exp)});
  if (ctx.device == Device::kCpu) {
    return cpu::cross_entropy_grad(dlogits, logits, targets, row_max, sum_exp, vocab_start,
                                   grad_scale);
  }
#if TMT_WITH_CUDA
  return cuda::cross_entropy_grad(ctx, dlogits, logits, targets, row_max, sum_exp, vocab_start,
                                  grad_scale);
#else
  TMT_CHECK(false, "cross_entropy_grad: this build has no CUDA backend");
#endif
}

}  // namespace tmt
