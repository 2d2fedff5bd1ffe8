#include "kernels/attention.h"

#include "kernels/cpu/attention.h"

namespace tmt {
namespace {

void check_args(const char* op, const Context& ctx, const Tensor& q, const Tensor& k,
                const Tensor& v, const Tensor& out, const Tensor& lse, const AttentionParams& p) {
  TMT_CHECK(q.rank() == 4 && k.rank() == 4 && v.shape == k.shape && out.shape == q.shape &&
                q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3) &&
                k.size(2) > 0 && q.size(2) % k.size(2) == 0,
            "{}: q {}, k {}, v {}, out {} are not [B, S, H, Dh], [B, S, Hk, Dh] with Hk dividing H",
            op, q.str(), k.str(), v.str(), out.str());
  TMT_CHECK(lse.shape == (Shape{q.size(0), q.size(2), q.size(1)}),
            "{}: lse {} is not [B, H, S] for q {}", op, lse.str(), q.str());
  for (const Tensor* t : {&k, &v, &out, &lse}) {
    TMT_CHECK(t->dtype == q.dtype && t->device == ctx.device, "{}: {} does not match q {} on {}",
              op, t->str(), q.str(), device_name(ctx.device));
  }
  TMT_CHECK(q.dtype == DType::kF32 || q.dtype == DType::kF64, "{}: f32 or f64, got {}", op,
            q.str());
  TMT_CHECK(p.window >= 0, "{}: negative window {}", op, p.window);
}

}  // namespace

void attention_fwd(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                   const Tensor& k, const Tensor& v, const AttentionParams& params) {
  check_args("attention_fwd", ctx, q, k, v, out, lse, params);
  if (ctx.device == Device::kCpu) return cpu::attention_fwd(out, lse, q, k, v, params);
  TMT_CHECK(false, "attention_fwd: no CUDA implementation yet");
}

void attention_bwd(const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                   const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& lse, const AttentionParams& params) {
  check_args("attention_bwd", ctx, q, k, v, out, lse, params);
  TMT_CHECK(dq.shape == q.shape && dout.shape == q.shape && dk.shape == k.shape &&
                dv.shape == k.shape && dq.dtype == q.dtype && dk.dtype == q.dtype &&
                dv.dtype == q.dtype && dout.dtype == q.dtype,
            "attention_bwd: dq {}, dk {}, dv {}, dout {} do not match q {}, k {}", dq.str(),
            dk.str(), dv.str(), dout.str(), q.str(), k.str());
  if (ctx.device == Device::kCpu)
    return cpu::attention_bwd(dq, dk, dv, dout, q, k, v, out, lse, params);
  TMT_CHECK(false, "attention_bwd: no CUDA implementation yet");
}

}  // namespace tmt
