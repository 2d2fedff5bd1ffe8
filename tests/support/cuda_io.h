// For tests of the CUDA kernels: host <-> device copies of test tensors, poisoned outputs, and
// inputs rounded through bf16. Header-only, since only the `cuda` tests (built with the CUDA
// backend) include it.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/base/arena.h"
#include "kernels/cuda/runtime.h"

namespace tmt::test {

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
