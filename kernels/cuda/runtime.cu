#include "kernels/base/arena.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/runtime.h"

namespace tmt::cuda {

int device_count(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    // Without a GPU the runtime reports an error (e.g. "driver version is insufficient"), not 0.
    if (why != nullptr) *why = cudaGetErrorString(err);
    return 0;
  }
  if (n == 0 && why != nullptr) *why = "no CUDA device";
  return n;
}

void init(int device) {
  TMT_CUDA_CHECK(cudaSetDevice(device));
  DeviceAllocator a;
  a.allocate = [](size_t bytes) {
    void* p = nullptr;
    TMT_CUDA_CHECK(cudaMalloc(&p, bytes));
    return p;
  };
  a.release = [](void* p) { TMT_CUDA_CHECK(cudaFree(p)); };
  a.zero = [](void* p, size_t bytes) { TMT_CUDA_CHECK(cudaMemset(p, 0, bytes)); };
  a.poison = [](void* p, size_t bytes) { TMT_CUDA_CHECK(cudaMemset(p, 0xff, bytes)); };
  register_device_allocator(Device::kCuda, a);
}

std::string current_device_uuid() {
  int device = 0;
  TMT_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  TMT_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  static const char* digits = "0123456789abcdef";
  std::string uuid = "GPU-";
  for (char b : prop.uuid.bytes) {
    const auto u = static_cast<unsigned char>(b);
    uuid += digits[u >> 4];
    uuid += digits[u & 15];
  }
  return uuid;
}

void synchronize(void* stream) {
  TMT_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
}

void synchronize_device() { TMT_CUDA_CHECK(cudaDeviceSynchronize()); }

void copy(void* dst, const void* src, size_t bytes) {
  TMT_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
}

void copy_async(void* dst, const void* src, size_t bytes, void* stream) {
  TMT_CUDA_CHECK(
      cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, static_cast<cudaStream_t>(stream)));
}

void memset_zero(void* ptr, size_t bytes, void* stream) {
  if (bytes == 0) return;
  TMT_CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, static_cast<cudaStream_t>(stream)));
}

size_t device_memory_used() {
  size_t free = 0, total = 0;
  TMT_CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return total - free;
}

std::string device_description(int device) {
  cudaDeviceProp prop{};
  TMT_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return fmt::format("{}, {} SMs, {:.1f} GiB", prop.name, prop.multiProcessorCount,
                     static_cast<double>(prop.totalGlobalMem) / (1 << 30));
}

}  // namespace tmt::cuda
