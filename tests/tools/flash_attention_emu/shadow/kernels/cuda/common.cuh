// The emulator's stand-in for kernels/cuda/common.cuh: the same names on emu.h (see run.sh).
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "emu.h"
#include "kernels/base/context.h"
using cudaStream_t = void*;
using cudaError_t = int;
constexpr int cudaSuccess = 0;
constexpr int cudaFuncAttributeMaxDynamicSharedMemorySize = 8;
template <class K>
int cudaFuncSetAttribute(K, int, int) {
  return 0;
}
inline int cudaGetLastError() { return 0; }
#define TMT_CUDA_CHECK(call)            \
  do {                                  \
    if ((call) != 0) ::emu::die(#call); \
  } while (0)
#define TMT_CUDA_CHECK_LAUNCH() TMT_CUDA_CHECK(cudaGetLastError())
namespace tmt::cuda {
struct bf16 {
  uint16_t bits;
};
constexpr unsigned kFullMask = 0xffffffffu;
template <class T>
T warp_sum(T v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
inline cudaStream_t stream_of(const Context& ctx) { return ctx.stream; }
}  // namespace tmt::cuda
constexpr int cudaDevAttrMaxSharedMemoryPerBlockOptin = 97;
inline int cudaGetDevice(int* d) {
  *d = 0;
  return 0;
}
inline int cudaDeviceGetAttribute(int* v, int, int) {
  *v = 232448;
  return 0;
}
