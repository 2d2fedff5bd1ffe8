#include "kernels/router.h"

#include <initializer_list>

#include "kernels/base/profiler.h"
#include "kernels/cpu/router.h"
#if TMT_WITH_CUDA
#include "kernels/cuda/router.h"
#endif

namespace tmt {
namespace {

// The router's floating dtype: f32|f64 on the CPU, f32 on CUDA.
bool float_dtype_ok(const Context& ctx, DType t) {
  return t == DType::kF32 || (ctx.device == Device::kCpu && t == DType::kF64);
}

void on_device(const char* op, const Context& ctx, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    TMT_CHECK(!t->defined() || t->numel() == 0 || t->device == ctx.device, "{}: {} not on {}", op,
              t->str(), device_name(ctx.device));
  }
}

void check_args(const char* op, const Context& ctx, const Tensor& probs, const Tensor& topk_idx,
                const Tensor& topk_w, const Tensor& logits) {
  TMT_CHECK(
      logits.rank() == 2 && probs.shape == logits.shape && topk_idx.rank() == 2 &&
          topk_idx.size(0) == logits.size(0) && topk_w.shape == topk_idx.shape &&
          topk_idx.size(1) <= logits.size(1),
      "{}: logits {}, probs {}, topk_idx {}, topk_w {} are not [T, E], [T, E], [T, K], [T, K]", op,
      logits.str(), probs.str(), topk_idx.str(), topk_w.str());
  TMT_CHECK(
      float_dtype_ok(ctx, logits.dtype) && probs.dtype == logits.dtype &&
          topk_w.dtype == logits.dtype && topk_idx.dtype == DType::kI32,
      "{}: logits, probs, topk_w must share f32|f64 (f32 on cuda) and topk_idx be i32 (got {}, "
      "{}, {}, {})",
      op, logits.str(), probs.str(), topk_w.str(), topk_idx.str());
  on_device(op, ctx, {&logits, &probs, &topk_idx, &topk_w});
}

// Costs, with T tokens, E experts, top-K: the scores ≈ 4 FLOPs a logit, the top-k K comparisons a
// logit; the backward ≈ 6 a logit. Bytes: every tensor once, the absent ones (Tensor{}) none.
double tokens_experts(const Tensor& probs) { return static_cast<double>(probs.numel()); }

}  // namespace

void router_fwd(const Context& ctx, const Tensor& probs, const Tensor& topk_idx,
                const Tensor& topk_w, const Tensor& lse, const Tensor& logits, const Tensor& bias,
                const RouterParams& params) {
  check_args("router_fwd", ctx, probs, topk_idx, topk_w, logits);
  TMT_CHECK(params.top_k == topk_idx.size(1) && lse.shape == (Shape{logits.size(0)}) &&
                lse.dtype == logits.dtype,
            "router_fwd: top_k {} for topk_idx {}, lse {}", params.top_k, topk_idx.str(),
            lse.str());
  TMT_CHECK(
      !bias.defined() || (bias.shape == (Shape{logits.size(1)}) && bias.dtype == logits.dtype),
      "router_fwd: bias {} for logits {}", bias.str(), logits.str());
  const int64_t e = logits.size(1), g = params.n_groups;
  TMT_CHECK(g >= 1 && e % g == 0 && (g == 1 || e / g >= 2) &&
                (g == 1 || (params.topk_groups >= 1 && params.topk_groups <= g &&
                            params.top_k <= params.topk_groups * (e / g))),
            "router_fwd: {} experts in {} groups, top-{} of the best {} groups", e, g, params.top_k,
            params.topk_groups);
  on_device("router_fwd", ctx, {&lse, &bias});
  const ProfileScope scope(ctx, "router_fwd",
                           {static_cast<double>(4 + params.top_k) * tokens_experts(logits),
                            bytes_of(logits, probs, topk_idx, topk_w, lse)});
  if (ctx.device == Device::kCpu)
    return cpu::router_fwd(probs, topk_idx, topk_w, lse, logits, bias, params);
#if TMT_WITH_CUDA
  return cuda::router_fwd(ctx, probs, topk_idx, topk_w, lse, logits, bias, params);
#else
  TMT_CHECK(false, "router_fwd: this build has no CUDA backend");
#endif
}

void router_bwd(const Context& ctx, const Tensor& dlogits, const Tensor& dtopk_w,
                const Tensor& dprobs, const Tensor& dlse, const Tensor& probs,
                const Tensor& topk_idx, const Tensor& topk_w, const Tensor& logits,
                const RouterParams& params) {
  check_args("router_bwd", ctx, probs, topk_idx, topk_w, logits);
  TMT_CHECK(dlogits.shape == logits.shape && dtopk_w.shape == topk_w.shape &&
                dlogits.dtype == logits.dtype && dtopk_w.dtype == logits.dtype,
            "router_bwd: dlogits {}, dtopk_w {} do not match logits {}, topk_w {}", dlogits.str(),
            dtopk_w.str(), logits.str(), topk_w.str());
  TMT_CHECK(!dprobs.defined() || (dprobs.shape == probs.shape && dprobs.dtype == probs.dtype),
            "router_bwd: dprobs {} for probs {}", dprobs.str(), probs.str());
  TMT_CHECK(
      !dlse.defined() || (dlse.shape == (Shape{logits.size(0)}) && dlse.dtype == logits.dtype),
      "router_bwd: dlse {} for logits {}", dlse.str(), logits.str());
  on_device("router_bwd", ctx, {&dlogits, &dtopk_w, &dprobs, &dlse});
  const ProfileScope scope(
      ctx, "router_bwd",
      {6 * tokens_experts(logits),
       bytes_of(dlogits, dtopk_w, dprobs, dlse) + bytes_of(probs, topk_idx, topk_w, logits)});
  if (ctx.device == Device::kCpu) {
    return cpu::router_bwd(dlogits, dtopk_w, dprobs, dlse, probs, topk_idx, topk_w, logits, params);
  }
#if TMT_WITH_CUDA
  return cuda::router_bwd(ctx, dlogits, dtopk_w, dprobs, dlse, probs, topk_idx, topk_w, logits,
                          params);
#else
  TMT_CHECK(false, "router_bwd: this build has no CUDA backend");
#endif
}

size_t router_loss_workspace_bytes(Device device, int64_t experts) {
  TMT_CHECK(experts >= 0, "router_loss_workspace_bytes: {} experts", experts);
  if (device == Device::kCpu) return 0;
#if TMT_WITH_CUDA
  return cuda::router_loss_workspace_bytes(experts);
#else
  TMT_CHECK(false, "router_loss_workspace_bytes: this build has no CUDA backend");
  return 0;
#endif
}

double load_balancing_loss(const Context& ctx, const Tensor& dprobs, const Tensor& probs,
                           const Tensor& topk_idx, double coeff, double grad_weight) {
  TMT_CHECK(dprobs.shape == probs.shape && dprobs.dtype == probs.dtype && topk_idx.rank() == 2 &&
                topk_idx.size(0) == probs.size(0) && topk_idx.dtype == DType::kI32,
            "load_balancing_loss: dprobs {}, probs {}, topk_idx {}", dprobs.str(), probs.str(),
            topk_idx.str());
  on_device("load_balancing_loss", ctx, {&dprobs, &probs, &topk_idx});
  TMT_CHECK(float_dtype_ok(ctx, probs.dtype), "load_balancing_loss: probs {}", probs.str());
  const ProfileScope scope(ctx, "load_balancing_loss",
                           {2 * tokens_experts(probs), bytes_of(probs, topk_idx, dprobs)});
  if (ctx.device == Device::kCpu)
    return cpu::load_balancing_loss(dprobs, probs, topk_idx, coeff, grad_weight);
#if TMT_WITH_CUDA
  return cuda::load_balancing_loss(ctx, dprobs, probs, topk_idx, coeff, grad_weight);
#else
  TMT_CHECK(false, "load_balancing_loss: this build has no CUDA backend");
#endif
}

double z_loss(const Context& ctx, const Tensor& dlse, const Tensor& lse, double coeff,
              double grad_weight) {
  TMT_CHECK(dlse.shape == lse.shape && dlse.dtype == lse.dtype && lse.rank() == 1,
            "z_loss: dlse {}, lse {}", dlse.str(), lse.str());
  on_device("z_loss", ctx, {&dlse, &lse});
  TMT_CHECK(float_dtype_ok(ctx, lse.dtype), "z_loss: lse {}", lse.str());
  const ProfileScope scope(ctx, "z_loss",
                           {3 * static_cast<double>(lse.numel()), bytes_of(lse, dlse)});
  if (ctx.device == Device::kCpu) return cpu::z_loss(dlse, lse, coeff, grad_weight);
#if TMT_WITH_CUDA
  return cuda::z_loss(ctx, dlse, lse, coeff, grad_weight);
#else
  TMT_CHECK(false, "z_loss: this build has no CUDA backend");
#endif
}

void router_stats(const Context& ctx, const Tensor& stats, const Tensor& probs,
                  const Tensor& topk_idx, const Tensor& lse) {
  TMT_CHECK(probs.rank() == 2 && stats.dtype == DType::kF64 &&
                stats.numel() == 2 * probs.size(1) + 1 && topk_idx.size(0) == probs.size(0) &&
                lse.numel() == probs.size(0) && lse.dtype == probs.dtype,
            "router_stats: stats {}, probs {}, topk_idx {}, lse {}", stats.str(), probs.str(),
            topk_idx.str(), lse.str());
  on_device("router_stats", ctx, {&stats, &probs, &topk_idx, &lse});
  TMT_CHECK(float_dtype_ok(ctx, probs.dtype) && topk_idx.dtype == DType::kI32,
            "router_stats: probs {}, topk_idx {}", probs.str(), topk_idx.str());
  const ProfileScope scope(ctx, "router_stats",
                           {tokens_experts(probs) + static_cast<double>(topk_idx.numel()),
                            bytes_of(probs, topk_idx, lse, stats)});
  if (ctx.device == Device::kCpu) return cpu::router_stats(stats, probs, topk_idx, lse);
#if TMT_WITH_CUDA
  return cuda::router_stats(ctx, stats, probs, topk_idx, lse);
#else
  TMT_CHECK(false, "router_stats: this build has no CUDA backend");
#endif
}

double load_balancing_from_stats(const Context& ctx, const Tensor& dprobs, const Tensor& stats,
                                 int64_t tokens, int64_t top_k, double coeff, double grad_weight,
                                 [[maybe_unused]] const double* host_stats) {
  TMT_CHECK(dprobs.rank() == 2 && stats.dtype == DType::kF64 &&
                stats.numel() == 2 * dprobs.size(1) + 1 && tokens >= dprobs.size(0),
            "load_balancing_from_stats: dprobs {}, stats {}, {} tokens", dprobs.str(), stats.str(),
            tokens);
  on_device("load_balancing_from_stats", ctx, {&dprobs, &stats});
  TMT_CHECK(float_dtype_ok(ctx, dprobs.dtype), "load_balancing_from_stats: dprobs {}",
            dprobs.str());
  const ProfileScope scope(ctx, "load_balancing_from_stats",
                           {tokens_experts(dprobs), bytes_of(stats, dprobs)});
  if (ctx.device == Device::kCpu)  // stats is host memory there
    return cpu::load_balancing_from_stats(dprobs, stats, tokens, top_k, coeff, grad_weight);
#if TMT_WITH_CUDA
  return cuda::load_balancing_from_stats(ctx, dprobs, stats, tokens, top_k, coeff, grad_weight,
                                         host_stats);
#else
  TMT_CHECK(false, "load_balancing_from_stats: this build has no CUDA backend");
#endif
}

double z_loss_from_stats(const Context& ctx, const Tensor& dlse, const Tensor& lse,
                         const Tensor& stats, int64_t tokens, double coeff, double grad_weight,
                         [[maybe_unused]] const double* host_stats) {
  TMT_CHECK(dlse.shape == lse.shape && dlse.dtype == lse.dtype && stats.dtype == DType::kF64,
            "z_loss_from_stats: dlse {}, lse {}, stats {}", dlse.str(), lse.str(), stats.str());
  on_device("z_loss_from_stats", ctx, {&dlse, &lse, &stats});
  TMT_CHECK(float_dtype_ok(ctx, lse.dtype) && stats.numel() >= 1,
            "z_loss_from_stats: lse {}, stats {}", lse.str(), stats.str());
  const ProfileScope scope(ctx, "z_loss_from_stats",
                           {2 * static_cast<double>(lse.numel()), bytes_of(lse, stats, dlse)});
  if (ctx.device == Device::kCpu)
    return cpu::z_loss_from_stats(dlse, lse, stats, tokens, coeff, grad_weight);
#if TMT_WITH_CUDA
  return cuda::z_loss_from_stats(ctx, dlse, lse, stats, tokens, coeff, grad_weight, host_stats);
#else
  TMT_CHECK(false, "z_loss_from_stats: this build has no CUDA backend");
#endif
}

void seq_aux_stats(const Context& ctx, const Tensor& stats, const Tensor& probs,
                   const Tensor& topk_idx, int64_t first_token, int64_t seq_len) {
  TMT_CHECK(probs.rank() == 2 && stats.dtype == DType::kF64 && stats.rank() == 2 &&
                stats.size(1) == 2 * probs.size(1) && topk_idx.rank() == 2 &&
                topk_idx.size(0) == probs.size(0) && seq_len >= 1 && first_token >= 0 &&
                first_token + probs.size(0) <= stats.size(0) * seq_len,
            "seq_aux_stats: stats {}, probs {}, topk_idx {}, rows from token {} of sequences of "
            "{}",
            stats.str(), probs.str(), topk_idx.str(), first_token, seq_len);
  on_device("seq_aux_stats", ctx, {&stats, &probs, &topk_idx});
  TMT_CHECK(float_dtype_ok(ctx, probs.dtype) && topk_idx.dtype == DType::kI32,
            "seq_aux_stats: probs {}, topk_idx {}", probs.str(), topk_idx.str());
  const ProfileScope scope(ctx, "seq_aux_stats",
                           {3 * tokens_experts(probs), bytes_of(probs, topk_idx, stats)});
  if (ctx.device == Device::kCpu)
    return cpu::seq_aux_stats(stats, probs, topk_idx, first_token, seq_len);
#if TMT_WITH_CUDA
  return cuda::seq_aux_stats(ctx, stats, probs, topk_idx, first_token, seq_len);
#else
  TMT_CHECK(false, "seq_aux_stats: this build has no CUDA backend");
#endif
}

double seq_aux_from_stats(const Context& ctx, const Tensor& dprobs, const Tensor& probs,
                          const Tensor& stats, int64_t first_token, int64_t seq_len,
                          int64_t seq_tokens, int64_t top_k, double coeff, double grad_weight,
                          [[maybe_unused]] const double* host_stats) {
  TMT_CHECK(probs.rank() == 2 && dprobs.shape == probs.shape && dprobs.dtype == probs.dtype &&
                stats.dtype == DType::kF64 && stats.rank() == 2 &&
                stats.size(1) == 2 * probs.size(1) && seq_len >= 1 && first_token >= 0 &&
                first_token + probs.size(0) <= stats.size(0) * seq_len && seq_tokens >= seq_len &&
                top_k >= 1,
            "seq_aux_from_stats: dprobs {}, probs {}, stats {}, rows from token {} of sequences "
            "of {} here and {} in all, top-{}",
            dprobs.str(), probs.str(), stats.str(), first_token, seq_len, seq_tokens, top_k);
  on_device("seq_aux_from_stats", ctx, {&dprobs, &probs, &stats});
  TMT_CHECK(float_dtype_ok(ctx, probs.dtype), "seq_aux_from_stats: probs {}", probs.str());
  const ProfileScope scope(ctx, "seq_aux_from_stats",
                           {4 * tokens_experts(probs), bytes_of(probs, stats, dprobs)});
  if (ctx.device == Device::kCpu) {  // stats is host memory there
    return cpu::seq_aux_from_stats(dprobs, probs, stats.ptr<const double>(), stats.size(0),
                                   first_token, seq_len, seq_tokens, top_k, coeff, grad_weight);
  }
#if TMT_WITH_CUDA
  return cuda::seq_aux_from_stats(ctx, dprobs, probs, stats, first_token, seq_len, seq_tokens,
                                  top_k, coeff, grad_weight, host_stats);
#else
  TMT_CHECK(false, "seq_aux_from_stats: this build has no CUDA backend");
#endif
}

}  // namespace tmt
