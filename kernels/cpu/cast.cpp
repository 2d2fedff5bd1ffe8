#include "kernels/cpu/cast.h"

namespace tmt::cpu {

void cast(const Tensor& out, const Tensor& in) {
  const auto n = static_cast<size_t>(in.numel());
  if (out.dtype == DType::kBF16 && in.dtype == DType::kF32) {
    const float* x = in.ptr<const float>();
    uint16_t* y = out.ptr<uint16_t>();
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; ++i) y[i] = float_to_bf16(x[i]);
    return;
  }
  // The general path goes through double, which holds every value of every format exactly.
  for (size_t i = 0; i < n; ++i)
    store_element(out.dtype, out.data, i, load_element(in.dtype, in.data, i));
}

}  // namespace tmt::cpu
