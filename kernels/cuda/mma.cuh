// Warp-level tensor-core helpers (sm_80 and later): ldmatrix, mma.sync m16n8k16 with bf16 operands
// and f32 accumulators, cp.async, and the bf16x2 packing and exp2 they go with. Device-only.
//
// Fragment layouts of mma.m16n8k16 (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating
// point type"), for lane = 4 · grp + quad (grp = lane / 4 in 0..7, quad = lane % 4); each 32-bit
// register holds two bf16, the lower-indexed element in the low half:
//   A 16x16, row-major  a[0] = A[grp][2q, 2q+1]      a[1] = A[grp+8][2q, 2q+1]
//                       a[2] = A[grp][2q+8, 2q+9]    a[3] = A[grp+8][2q+8, 2q+9]
//   B 16x8 (k by n)     b[0] = B[2q, 2q+1][grp]      b[1] = B[2q+8, 2q+9][grp]
//   C, D 16x8, f32      c[0], c[1] = C[grp][2q, 2q+1]   c[2], c[3] = C[grp+8][2q, 2q+1]
// ldmatrix.x4 loads four 8x8 b16 matrices: lane l gives the address of row l % 8 of matrix l / 8
// (16 contiguous bytes, 16-byte aligned) and receives in r[m] row l / 4, elements 2(l % 4) and
// 2(l % 4) + 1, of matrix m; with .trans it receives column l / 4, elements 2(l % 4), 2(l % 4) + 1.
// So a row-major 16x16 tile read as matrices (rows 0-7, cols 0-7), (8-15, 0-7), (0-7, 8-15),
// (8-15, 8-15) gives an A fragment; an [n][k] tile (k contiguous) read without .trans, and a
// [k][n] tile (n contiguous) read with .trans, give B fragments.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

namespace tmt::cuda {

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Four 8x8 matrices of 16-bit elements from shared memory (layout above).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(smem)));
}

// The same, each matrix transposed on the way.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(smem)));
}

// d += A · B for one 16x8x16 tile: A as a[4], B as b0, b1, d in f32 (layouts above).
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                               uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats rounded to bf16 (nearest even) in one register, `lo` in the low half.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  uint32_t r;
  memcpy(&r, &v, sizeof r);
  return r;
}

// The two bf16 of a register as floats (exactly), `lo` from the low half.
__device__ __forceinline__ void unpack_bf16x2(uint32_t v, float& lo, float& hi) {
  lo = __uint_as_float(v << 16);
  hi = __uint_as_float(v & 0xffff0000u);
}

// 2^x by the special-function unit (ex2.approx: about 2 ulp; 2^-inf = +0).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Asynchronous copies global -> shared that bypass the registers. With `valid` false nothing is
// read and the destination is zero-filled (src-size 0); `gmem` must still be a valid address.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(smem)),
               "l"(__cvta_generic_to_global(gmem)), "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_4(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(shared_address(smem)),
               "l"(__cvta_generic_to_global(gmem)), "r"(valid ? 4 : 0)
               : "memory");
}
// Closes the group of copies this thread issued since the last commit.
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits until every copy this thread issued has landed. Other threads see them after a barrier.
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_all;\n" ::: "memory");
}

}  // namespace tmt::cuda
