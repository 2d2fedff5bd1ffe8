// The quantize kernels of fp8_quantize.h. Each thread block takes tiles whole, so a tile's amax,
// scale and codes come from one block: rows and blocks reduce in registers and shared memory;
// columns stage a 128 x 32 slab in shared memory and write it out transposed, 128 codes a row.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/fp8_quantize.h"

namespace tmt::cuda {
namespace {

constexpr int kTile = 128;
constexpr float kE4m3Max = 448.0f;

__device__ float load(const float* p, int64_t i) { return p[i]; }
__device__ float load(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }

// The scale of a tile with this amax; `finite` false when the tile holds a NaN or an infinity.
__device__ float tile_scale(float amax, bool finite, bool pow2) {
  if (!finite) return __int_as_float(0x7fc00000);
  if (amax == 0.0f) return 1.0f;
  const float s = __fdiv_rn(amax, kE4m3Max);
  if (!pow2) return s;
  int e = 0;
  const double m = frexp(static_cast<double>(s), &e);  // s = m · 2^e, m in [0.5, 1)
  return m == 0.5 ? s : static_cast<float>(ldexp(1.0, e));
}

__device__ __nv_fp8_storage_t code(float x, float s) {
  return __nv_cvt_double_to_fp8(static_cast<double>(x) / static_cast<double>(s), __NV_SATFINITE,
                                __NV_E4M3);
}

__device__ float warp_max(float v) {
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// One warp per 1 x 128 tile: 4 elements a lane.
template <class T>
__global__ void quantize_rows(__nv_fp8_storage_t* codes, float* scales, const T* in, int64_t rows,
                              int64_t cols, bool pow2) {
  const int64_t tiles_per_row = (cols + kTile - 1) / kTile;
  const int64_t tile = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  if (tile >= rows * tiles_per_row) return;  // whole warps leave together
  const int lane = static_cast<int>(threadIdx.x % 32);
  const int64_t row = tile / tiles_per_row, kb = tile % tiles_per_row;
  const int64_t c0 = kb * kTile;
  float x[4];
  float amax = 0;
  bool finite = true;
  for (int j = 0; j < 4; ++j) {
    const int64_t c = c0 + lane * 4 + j;
    x[j] = c < cols ? load(in, row * cols + c) : 0.0f;
    finite = finite && isfinite(x[j]);
    amax = fmaxf(amax, fabsf(x[j]));
  }
  amax = warp_max(amax);
  finite = __all_sync(0xffffffffu, finite);
  const float s = tile_scale(amax, finite, pow2);
  for (int j = 0; j < 4; ++j) {
    const int64_t c = c0 + lane * 4 + j;
    if (c < cols) codes[row * cols + c] = code(x[j], s);
  }
  if (lane == 0) scales[kb * rows + row] = s;
}

// A block of 256 threads per 128 x 32 slab (128 rows of 32 columns): each column's tile is its 128
// rows. Writes codes [cols, padded_rows]: 128 consecutive bytes of each of the 32 transposed rows.
constexpr int kSlabCols = 32;
template <class T>
__global__ void quantize_columns(__nv_fp8_storage_t* codes, float* scales, const T* in,
                                 int64_t rows, int64_t cols, int64_t padded_rows, bool pow2) {
  __shared__ float slab[kTile][kSlabCols + 1];
  __shared__ float part_max[8][kSlabCols];
  __shared__ int part_finite[8][kSlabCols];
  __shared__ float scale[kSlabCols];
  const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
  const int64_t r0 = blockIdx.y * static_cast<int64_t>(kTile);
  const int64_t c0 = blockIdx.x * static_cast<int64_t>(kSlabCols);
  const int64_t c = c0 + lane;
  float amax = 0;
  bool finite = true;
  for (int i = 0; i < kTile / 8; ++i) {
    const int r = warp * (kTile / 8) + i;
    const float v = r0 + r < rows && c < cols ? load(in, (r0 + r) * cols + c) : 0.0f;
    slab[r][lane] = v;
    finite = finite && isfinite(v);
    amax = fmaxf(amax, fabsf(v));
  }
  part_max[warp][lane] = amax;
  part_finite[warp][lane] = finite ? 1 : 0;
  __syncthreads();
  if (warp == 0) {
    float m = 0;
    bool f = true;
    for (int w = 0; w < 8; ++w) {
      m = fmaxf(m, part_max[w][lane]);
      f = f && part_finite[w][lane] != 0;
    }
    scale[lane] = tile_scale(m, f, pow2);
    if (c < cols) scales[blockIdx.y * cols + c] = scale[lane];
  }
  __syncthreads();
  // Warp w writes transposed rows 4w .. 4w+3: lane l the 4 codes of rows 4l .. 4l+3 of the slab,
  // zeros past the last row up to padded_rows.
  for (int j = 0; j < 4; ++j) {
    const int col = warp * 4 + j;
    if (c0 + col >= cols) continue;
    for (int i = 0; i < 4; ++i) {
      const int64_t r = r0 + lane * 4 + i;
      if (r < rows) {
        codes[(c0 + col) * padded_rows + r] = code(slab[lane * 4 + i][col], scale[col]);
      } else if (r < padded_rows) {
        codes[(c0 + col) * padded_rows + r] = 0;
      }
    }
  }
}

// A block of 256 threads per 128 x 128 block: 64 elements a thread, staged as codes in shared
// memory when the transpose is asked for.
template <class T>
__global__ void quantize_blocks(__nv_fp8_storage_t* codes, float* scales,
                                __nv_fp8_storage_t* codes_t, float* scales_t, const T* in,
                                int64_t n, int64_t k, bool pow2) {
  __shared__ __nv_fp8_storage_t staged[kTile][kTile + 4];
  __shared__ float warp_amax[8];
  __shared__ int warp_finite[8];
  const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
  const int64_t nb = blockIdx.y, kb = blockIdx.x;
  const int64_t r0 = nb * kTile, c0 = kb * kTile;
  // Thread t covers columns (t % 32) · 4 .. + 3 of rows t / 32, t / 32 + 8, ...: a warp reads 128
  // consecutive elements of a row.
  float amax = 0;
  bool finite = true;
  for (int i = 0; i < kTile / 8; ++i) {
    const int64_t r = r0 + warp + 8 * i;
    for (int j = 0; j < 4; ++j) {
      const int64_t c = c0 + lane * 4 + j;
      const float v = r < n && c < k ? load(in, r * k + c) : 0.0f;
      finite = finite && isfinite(v);
      amax = fmaxf(amax, fabsf(v));
    }
  }
  amax = warp_max(amax);
  finite = __all_sync(0xffffffffu, finite);
  if (lane == 0) {
    warp_amax[warp] = amax;
    warp_finite[warp] = finite ? 1 : 0;
  }
  __syncthreads();
  float m = 0;
  bool f = true;
  for (int w = 0; w < 8; ++w) {
    m = fmaxf(m, warp_amax[w]);
    f = f && warp_finite[w] != 0;
  }
  const float s = tile_scale(m, f, pow2);
  const int64_t n_blocks = gridDim.y, k_blocks = gridDim.x;
  if (threadIdx.x == 0) {
    scales[kb * n_blocks + nb] = s;
    if (scales_t != nullptr) scales_t[nb * k_blocks + kb] = s;
  }
  for (int i = 0; i < kTile / 8; ++i) {
    const int rr = warp + 8 * i;
    const int64_t r = r0 + rr;
    for (int j = 0; j < 4; ++j) {
      const int cc = lane * 4 + j;
      const int64_t c = c0 + cc;
      if (r >= n || c >= k) continue;
      const __nv_fp8_storage_t q = code(load(in, r * k + c), s);
      codes[r * k + c] = q;
      staged[rr][cc] = q;
    }
  }
  if (codes_t == nullptr) return;
  __syncthreads();
  // The transpose: row c of codes_t holds column c of the block, a warp writing 128 of its bytes.
  for (int i = 0; i < kTile / 8; ++i) {
    const int cc = warp + 8 * i;
    const int64_t c = c0 + cc;
    for (int j = 0; j < 4; ++j) {
      const int rr = lane * 4 + j;
      const int64_t r = r0 + rr;
      if (r < n && c < k) codes_t[c * n + r] = staged[rr][cc];
    }
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_operand(const char* op, const Tensor& in) {
  TMT_CHECK(in.device == Device::kCuda && in.rank() == 2 &&
                (in.dtype == DType::kBF16 || in.dtype == DType::kF32),
            "{}: input must be a 2-D bf16 or f32 CUDA tensor", op);
}

void check_out(const char* op, const char* what, const Tensor& t, DType dtype, int64_t numel) {
  TMT_CHECK(t.device == Device::kCuda && t.dtype == dtype && t.numel() == numel,
            "{}: {} must be a CUDA {} tensor of {} elements (has {} {})", op, what,
            dtype_name(dtype), numel, t.numel(), dtype_name(t.dtype));
}

// Calls f with `in`'s element pointer typed.
template <class F>
void typed(const Tensor& in, F f) {
  if (in.dtype == DType::kBF16) {
    f(static_cast<const __nv_bfloat16*>(in.data));
  } else {
    f(static_cast<const float*>(in.data));
  }
}

}  // namespace

void fp8_quantize_rows(const Context& ctx, const Tensor& codes, const Tensor& scales,
                       const Tensor& in, bool pow2_scales) {
  check_operand("fp8_quantize_rows", in);
  const int64_t rows = in.size(0), cols = in.size(1);
  check_out("fp8_quantize_rows", "codes", codes, DType::kF8E4M3, rows * cols);
  check_out("fp8_quantize_rows", "scales", scales, DType::kF32, ceil_div(cols, kTile) * rows);
  const int64_t tiles = rows * ceil_div(cols, kTile);
  if (tiles == 0) return;
  constexpr int kWarps = 8;
  const auto stream = static_cast<cudaStream_t>(ctx.stream);
  typed(in, [&](auto p) {
    quantize_rows<<<static_cast<unsigned>(ceil_div(tiles, kWarps)), kWarps * 32, 0, stream>>>(
        static_cast<__nv_fp8_storage_t*>(codes.data), scales.ptr<float>(), p, rows, cols,
        pow2_scales);
  });
  TMT_CUDA_CHECK_LAUNCH();
}

void fp8_quantize_columns(const Context& ctx, const Tensor& codes, const Tensor& scales,
                          const Tensor& in, bool pow2_scales, int64_t padded_rows) {
  check_operand("fp8_quantize_columns", in);
  const int64_t rows = in.size(0), cols = in.size(1);
  if (padded_rows == 0) padded_rows = rows;
  TMT_CHECK(padded_rows >= rows && padded_rows <= ceil_div(rows, kTile) * kTile,
            "fp8_quantize_columns: padded_rows {} for {} rows (within their last tile)",
            padded_rows, rows);
  check_out("fp8_quantize_columns", "codes", codes, DType::kF8E4M3, padded_rows * cols);
  check_out("fp8_quantize_columns", "scales", scales, DType::kF32, ceil_div(rows, kTile) * cols);
  if (rows == 0 || cols == 0) return;
  TMT_CHECK(ceil_div(rows, kTile) < 65536, "fp8_quantize_columns: {} rows (at most {})", rows,
            65535 * kTile);
  const dim3 grid(static_cast<unsigned>(ceil_div(cols, kSlabCols)),
                  static_cast<unsigned>(ceil_div(rows, kTile)));
  const auto stream = static_cast<cudaStream_t>(ctx.stream);
  typed(in, [&](auto p) {
    quantize_columns<<<grid, 256, 0, stream>>>(static_cast<__nv_fp8_storage_t*>(codes.data),
                                               scales.ptr<float>(), p, rows, cols, padded_rows,
                                               pow2_scales);
  });
  TMT_CUDA_CHECK_LAUNCH();
}

void fp8_quantize_blocks(const Context& ctx, const Tensor& codes, const Tensor& scales,
                         const Tensor& codes_t, const Tensor& scales_t, const Tensor& in,
                         bool pow2_scales) {
  check_operand("fp8_quantize_blocks", in);
  const int64_t n = in.size(0), k = in.size(1);
  const int64_t blocks = ceil_div(n, kTile) * ceil_div(k, kTile);
  check_out("fp8_quantize_blocks", "codes", codes, DType::kF8E4M3, n * k);
  check_out("fp8_quantize_blocks", "scales", scales, DType::kF32, blocks);
  const bool transpose = codes_t.data != nullptr;
  if (transpose) {
    check_out("fp8_quantize_blocks", "codes_t", codes_t, DType::kF8E4M3, n * k);
    check_out("fp8_quantize_blocks", "scales_t", scales_t, DType::kF32, blocks);
  }
  if (blocks == 0) return;
  TMT_CHECK(ceil_div(n, kTile) < 65536, "fp8_quantize_blocks: {} rows (at most {})", n,
            65535 * kTile);
  const dim3 grid(static_cast<unsigned>(ceil_div(k, kTile)),
                  static_cast<unsigned>(ceil_div(n, kTile)));
  const auto stream = static_cast<cudaStream_t>(ctx.stream);
  typed(in, [&](auto p) {
    quantize_blocks<<<grid, 256, 0, stream>>>(
        static_cast<__nv_fp8_storage_t*>(codes.data), scales.ptr<float>(),
        transpose ? static_cast<__nv_fp8_storage_t*>(codes_t.data) : nullptr,
        transpose ? scales_t.ptr<float>() : nullptr, p, n, k, pow2_scales);
  });
  TMT_CUDA_CHECK_LAUNCH();
}

}  // namespace tmt::cuda
