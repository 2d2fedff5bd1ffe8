#include "kernels/router.h"

#include "kernels/cpu/router.h"

namespace tmt {
namespace {

void check_args(const char* op, const Context& ctx, const Tensor& probs, const Tensor& topk_idx,
                const Tensor& topk_w, const Tensor& logits) {
  TMT_CHECK(
      logits.rank() == 2 && probs.shape == logits.shape && topk_idx.rank() == 2 &&
          topk_idx.size(0) == logits.size(0) && topk_w.shape == topk_idx.shape &&
          topk_idx.size(1) <= logits.size(1),
      "{}: logits {}, probs {}, topk_idx {}, topk_w {} are not [T, E], [T, E], [T, K], [T, K]", op,
      logits.str(), probs.str(), topk_idx.str(), topk_w.str());
  TMT_CHECK((logits.dtype == DType::kF32 || logits.dtype == DType::kF64) &&
                probs.dtype == logits.dtype && topk_w.dtype == logits.dtype &&
                topk_idx.dtype == DType::kI32,
            "{}: logits, probs, topk_w must share f32|f64 and topk_idx be i32 (got {}, {}, {}, {})",
            op, logits.str(), probs.str(), topk_w.str(), topk_idx.str());
  TMT_CHECK(logits.device == ctx.device, "{}: logits {} not on {}", op, logits.str(),
            device_name(ctx.device));
}

}  // namespace

void router_fwd(const Context& ctx, const Tensor& probs, const Tensor& topk_idx,
                const Tensor& topk_w, const Tensor& lse, const Tensor& logits,
                const RouterParams& params) {
  check_args("router_fwd", ctx, probs, topk_idx, topk_w, logits);
  TMT_CHECK(params.top_k == topk_idx.size(1) && lse.shape == (Shape{logits.size(0)}) &&
                lse.dtype == logits.dtype,
            "router_fwd: top_k {} for topk_idx {}, lse {}", params.top_k, topk_idx.str(),
            lse.str());
  if (ctx.device == Device::kCpu)
    return cpu::router_fwd(probs, topk_idx, topk_w, lse, logits, params);
  TMT_CHECK(false, "router_fwd: no CUDA implementation yet");
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
  if (ctx.device == Device::kCpu) {
    return cpu::router_bwd(dlogits, dtopk_w, dprobs, dlse, probs, topk_idx, topk_w, logits, params);
  }
  TMT_CHECK(false, "router_bwd: no CUDA implementation yet");
}

double load_balancing_loss(const Context& ctx, const Tensor& dprobs, const Tensor& probs,
                           const Tensor& topk_idx, double coeff, double grad_weight) {
  TMT_CHECK(dprobs.shape == probs.shape && dprobs.dtype == probs.dtype && topk_idx.rank() == 2 &&
                topk_idx.size(0) == probs.size(0) && topk_idx.dtype == DType::kI32,
            "load_balancing_loss: dprobs {}, probs {}, topk_idx {}", dprobs.str(), probs.str(),
            topk_idx.str());
  if (ctx.device == Device::kCpu)
    return cpu::load_balancing_loss(dprobs, probs, topk_idx, coeff, grad_weight);
  TMT_CHECK(false, "load_balancing_loss: no CUDA implementation yet");
}

double z_loss(const Context& ctx, const Tensor& dlse, const Tensor& lse, double coeff,
              double grad_weight) {
  TMT_CHECK(dlse.shape == lse.shape && dlse.dtype == lse.dtype && lse.rank() == 1,
            "z_loss: dlse {}, lse {}", dlse.str(), lse.str());
  if (ctx.device == Device::kCpu) return cpu::z_loss(dlse, lse, coeff, grad_weight);
  TMT_CHECK(false, "z_loss: no CUDA implementation yet");
}

void router_stats(const Context& ctx, const Tensor& stats, const Tensor& probs,
                  const Tensor& topk_idx, const Tensor& lse) {
  TMT_CHECK(probs.rank() == 2 && stats.dtype == DType::kF64 &&
                stats.numel() == 2 * probs.size(1) + 1 && topk_idx.size(0) == probs.size(0) &&
                lse.numel() == probs.size(0) && lse.dtype == probs.dtype,
            "router_stats: stats {}, probs {}, topk_idx {}, lse {}", stats.str(), probs.str(),
            topk_idx.str(), lse.str());
  if (ctx.device == Device::kCpu) return cpu::router_stats(stats, probs, topk_idx, lse);
  TMT_CHECK(false, "router_stats: no CUDA implementation yet");
}

double load_balancing_from_stats(const Context& ctx, const Tensor& dprobs, const Tensor& stats,
                                 int64_t tokens, int64_t top_k, double coeff, double grad_weight) {
  TMT_CHECK(dprobs.rank() == 2 && stats.dtype == DType::kF64 &&
                stats.numel() == 2 * dprobs.size(1) + 1 && tokens >= dprobs.size(0),
            "load_balancing_from_stats: dprobs {}, stats {}, {} tokens", dprobs.str(), stats.str(),
            tokens);
  if (ctx.device == Device::kCpu)
    return cpu::load_balancing_from_stats(dprobs, stats, tokens, top_k, coeff, grad_weight);
  TMT_CHECK(false, "load_balancing_from_stats: no CUDA implementation yet");
}

double z_loss_from_stats(const Context& ctx, const Tensor& dlse, const Tensor& lse,
                         const Tensor& stats, int64_t tokens, double coeff, double grad_weight) {
  TMT_CHECK(dlse.shape == lse.shape && dlse.dtype == lse.dtype && stats.dtype == DType::kF64,
            "z_loss_from_stats: dlse {}, lse {}, stats {}", dlse.str(), lse.str(), stats.str());
  if (ctx.device == Device::kCpu)
    return cpu::z_loss_from_stats(dlse, lse, stats, tokens, coeff, grad_weight);
  TMT_CHECK(false, "z_loss_from_stats: no CUDA implementation yet");
}

}  // namespace tmt
