#include "kernels/adamw.h"

#include "kernels/base/profiler.h"
#include "kernels/cpu/adamw.h"
#if TMT_WITH_CUDA
#include "kernels/cuda/adamw.h"
#endif

namespace tmt {

void adamw_step(const Context& ctx, const Tensor& param, const Tensor& grad, const Tensor& m,
                const Tensor& v, const AdamWParams& params, const Tensor& weight) {
  TMT_CHECK(
      param.dtype == DType::kF32 || (ctx.device == Device::kCpu && param.dtype == DType::kF64),
      "adamw_step: param {} must be f32 (or f64 on cpu)", param.str());
  for (const Tensor* t : {&grad, &m, &v}) {
    TMT_CHECK(t->numel() == param.numel() && t->dtype == param.dtype,
              "adamw_step: {} does not match param {}", t->str(), param.str());
  }
  for (const Tensor* t : {&param, &grad, &m, &v}) {
    TMT_CHECK(t->device == ctx.device, "adamw_step: {} not on {}", t->str(),
              device_name(ctx.device));
  }
  if (weight.defined()) {
    TMT_CHECK(weight.numel() == param.numel() && weight.dtype == DType::kBF16 &&
                  param.dtype == DType::kF32 && weight.device == ctx.device,
              "adamw_step: weight {} must be the bf16 copy of f32 param {}", weight.str(),
              param.str());
  }
  const AdamWParams& p = params;
  TMT_CHECK(p.step >= 1 && 0.0 <= p.beta1 && p.beta1 < 1.0 && 0.0 <= p.beta2 && p.beta2 < 1.0 &&
                p.eps > 0.0 && p.lr >= 0.0 && p.weight_decay >= 0.0,
            "adamw_step: bad hyper-parameters lr {} beta1 {} beta2 {} eps {} weight_decay {} "
            "step {}",
            p.lr, p.beta1, p.beta2, p.eps, p.weight_decay, p.step);
  // ≈ 12 FLOPs a parameter; reads param, grad, m, v and writes param, m, v.
  const ProfileScope scope(ctx, "adamw_step",
                           {12 * static_cast<double>(param.numel()),
                            7 * bytes_of(param) + (weight.defined() ? bytes_of(weight) : 0.0)});
  if (ctx.device == Device::kCpu) return cpu::adamw_step(param, grad, m, v, params, weight);
#if TMT_WITH_CUDA
  return cuda::adamw_step(ctx, param, grad, m, v, params, weight);
#else
  TMT_CHECK(false, "adamw_step: this build has no CUDA backend");
#endif
}

}  // namespace tmt
