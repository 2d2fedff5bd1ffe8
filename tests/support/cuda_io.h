// For tests of the CUDA kernels: the GPU context they run on, host <-> device copies of test
// tensors, poisoned outputs, and inputs rounded through bf16. Header-only, since only the `cuda`
// tests (built with the CUDA backend) include it.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/attention.h"
#include "kernels/base/arena.h"
#include "kernels/base/workspace.h"
#include "kernels/cuda/grouped_gemm.h"
#include "kernels/cuda/flash_attention.h"
#include "kernels/cuda/runtime.h"
#include "kernels/grouped_linear.h"
#include "kernels/linear.h"
#include "kernels/moe_dispatch.h"
#include "kernels/reduce.h"
#include "kernels/router.h"

namespace tmt::test {

// The context the kernel tests run the GPU side on: the default stream, and a workspace
// (kernels/base/workspace.h) reserved from every op's query at sizes beyond any test's — 2^22
// dispatch assignments, 2048 experts (the CUDA router's most), 1024 local experts in a grouped
// GEMM (its most) — and, for attention, the tensor-core backward's D for up to 2^20 rows (B·S·H):
// cuDNN's workspace depends on the whole shape, so the attention tests that may take the cuDNN
// path size a workspace per case from the op's queries. Made once per test process, on first use
// (after main's cuda::init). It is never freed: a cudaFree during static destruction may find the
// CUDA runtime already unloaded.
inline const Context& gpu() {
  static const Context context = [] {
    constexpr Device kCuda = Device::kCuda;
    auto* workspace = new Workspace;
    workspace->reserve(linear_workspace_bytes(kCuda));
    workspace->reserve(grouped_linear_workspace_bytes(kCuda, cuda::kGroupedGemmMaxExperts));
    workspace->reserve(cuda::flash_attention_bwd_workspace_bytes(1, 1 << 14, 1 << 6));
    workspace->reserve(moe_dispatch_workspace_bytes(kCuda, int64_t{1} << 22));
    workspace->reserve(sum_squares_workspace_bytes(kCuda));
    workspace->reserve(router_loss_workspace_bytes(kCuda, 2048));
    workspace->allocate(kCuda);
    return Context{kCuda, nullptr, nullptr, workspace};
  }();
  return context;
}

// A device copy of a host tensor, allocated in `device`.
inline Tensor to_device(Arena& device, const Tensor& host) {
  Tensor t = device.alloc(host.dtype, host.shape);
  cuda::copy(t.data, host.data, host.nbytes());
  return t;
}

// A host copy of a device tensor (waits for the default stream's work, as cudaMemcpy does).
inline Tensor to_host(Arena& host, const Tensor& device) {
  Tensor t = host.alloc(device.dtype, device.shape);
  cuda::copy(t.data, device.data, device.nbytes());
  return t;
}

// Fills a device tensor with all-ones bytes, a NaN in f32, f64 and bf16: an output element the
// kernel fails to write then fails the comparison.
inline void poison(const Tensor& device) {
  const std::vector<uint8_t> nan_bytes(device.nbytes(), 0xff);
  cuda::copy(device.data, nan_bytes.data(), nan_bytes.size());
}

// Rounds every element of a host f32 tensor to the nearest bf16 (in place), so that a CPU reference
// run on it in f32 sees exactly the values a bf16 kernel gets. Does nothing for other dtypes.
inline void round_to(const Tensor& host, DType dtype) {
  if (dtype != DType::kBF16) return;
  float* p = host.ptr<float>();
  for (int64_t i = 0; i < host.numel(); ++i) p[i] = bf16_to_float(float_to_bf16(p[i]));
}

// A host copy of `host` (f32) in `dtype`, through the format's rounding.
inline Tensor converted(Arena& arena, const Tensor& host, DType dtype) {
  Tensor t = arena.alloc(dtype, host.shape);
  for (int64_t i = 0; i < host.numel(); ++i) {
    store_element(dtype, t.data, static_cast<size_t>(i),
                  load_element(host.dtype, host.data, static_cast<size_t>(i)));
  }
  return t;
}

// The device copy of a host f32 tensor in `dtype`: to_device(converted(...)).
inline Tensor to_device_as(Arena& device, Arena& host, const Tensor& values, DType dtype) {
  return to_device(device, converted(host, values, dtype));
}

}  // namespace tmt::test
