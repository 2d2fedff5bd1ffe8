// The emulator's stand-in for kernels/cuda/mma.cuh: the same names on emu.h (see run.sh).
#pragma once
#include "emu.h"
namespace tmt::cuda {
inline void ldmatrix_x4(uint32_t (&r)[4], const void* p) { ::emu::ldmatrix(r, p, false); }
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) { ::emu::ldmatrix(r, p, true); }
inline void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  ::emu::mma(d, a, b0, b1);
}
inline uint32_t pack_bf16x2(float lo, float hi) {
  return uint32_t(::emu::f2bf(lo)) | (uint32_t(::emu::f2bf(hi)) << 16);
}
inline void unpack_bf16x2(uint32_t v, float& lo, float& hi) {
  lo = ::emu::bf2f(v & 0xffff);
  hi = ::emu::bf2f(v >> 16);
}
inline float fast_exp2(float x) {
  float y = std::exp2f(x);
  return std::fpclassify(y) == FP_SUBNORMAL ? 0.0f : y;
}
inline void cp_async_16(void* s, const void* g, bool valid) { ::emu::cp_async(s, g, 16, valid); }
inline void cp_async_4(void* s, const void* g, bool valid) { ::emu::cp_async(s, g, 4, valid); }
inline void cp_async_commit() {}
inline void cp_async_wait_all() { ::emu::cp_wait_all(); }
}  // namespace tmt::cuda
