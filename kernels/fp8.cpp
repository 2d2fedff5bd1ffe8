#include "kernels/fp8.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/base/check.h"
#include "kernels/base/profiler.h"
#include "kernels/linear.h"

#if TMT_WITH_CUDA
#include "kernels/cuda/fp8_linear.h"
#endif

namespace tmt {
namespace {

constexpr double kMinNormal = 0x1p-6;  // e4m3's smallest normal value
constexpr double kSubnormalStep = 0x1p-9;

// The largest |x| of a tile, NaN when it holds a NaN.
template <class T>
double tile_amax(const T* in, int64_t cols, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  double amax = 0;
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t c = c0; c < c1; ++c) {
      const double a = std::fabs(static_cast<double>(in[r * cols + c]));
      amax = std::isnan(a) || std::isnan(amax) ? NAN : std::max(amax, a);
    }
  }
  return amax;
}

// Every tile of [rows, cols] in tile_rows × tile_cols, each element x -> round(x / s) · s with the
// tile's scale s = scale_of(amax).
template <class T, class Scale, class Round>
void quantize_tiles(T* out, const T* in, int64_t rows, int64_t cols, int64_t tile_rows,
                    int64_t tile_cols, Scale scale_of, Round round) {
  for (int64_t r0 = 0; r0 < rows; r0 += tile_rows) {
    const int64_t r1 = std::min(rows, r0 + tile_rows);
    for (int64_t c0 = 0; c0 < cols; c0 += tile_cols) {
      const int64_t c1 = std::min(cols, c0 + tile_cols);
      const double s = scale_of(tile_amax(in, cols, r0, r1, c0, c1));
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t c = c0; c < c1; ++c) {
          const int64_t i = r * cols + c;
          // A zero scale (an NVFP4 block scale that underflows) leaves the block zero.
          out[i] = static_cast<T>(s == 0 ? 0.0 : round(static_cast<double>(in[i]) / s) * s);
        }
      }
    }
  }
}

template <class T>
void fake_quant_tiles(T* out, const T* in, int64_t rows, int64_t cols, int64_t tile_rows,
                      int64_t tile_cols, bool pow2) {
  quantize_tiles(
      out, in, rows, cols, tile_rows, tile_cols,
      [pow2](double amax) { return fp8_scale(amax, pow2); }, [](double x) { return e4m3(x); });
}

template <class T>
void mx_tiles(T* out, const T* in, int64_t rows, int64_t cols, int64_t tile_rows,
              int64_t tile_cols) {
  quantize_tiles(out, in, rows, cols, tile_rows, tile_cols, mx_scale,
                 [](double x) { return e4m3(x); });
}

template <class T>
void nvfp4_tiles(T* out, const T* in, int64_t rows, int64_t cols) {
  const double tensor = tile_amax(in, cols, 0, rows, 0, cols);
  const double s_t = !std::isfinite(tensor) ? NAN
                     : tensor == 0          ? 1.0
                                            : static_cast<float>(tensor / (kE4m3Max * 6));
  quantize_tiles(
      out, in, rows, cols, 1, kNvfp4Block,
      [s_t](double amax) {
        if (!std::isfinite(amax) || !std::isfinite(s_t)) return static_cast<double>(NAN);
        return e4m3(amax / (6 * s_t)) * s_t;  // the block's e4m3 scale, times the tensor's
      },
      [](double x) { return e2m1(x); });
}

void check_cpu(const char* op, const Context& ctx) {
  TMT_CHECK(ctx.device == Device::kCpu,
            "{}: this build has no CUDA backend for FP8 (fake quantization on the CPU only)", op);
}

// On CUDA the kernels are blockwise; the recipe's rules refuse the other scalings there.
[[maybe_unused]] void check_cuda_recipe(const char* op, const Fp8Recipe& r) {
  TMT_CHECK(r.scaling == Fp8Scaling::kBlockwise && !r.dispatch,
            "{}: CUDA runs FP8 blockwise, without the FP8 dispatch, only", op);
}

// `in` fake-quantized into `out` in tiles of tile_rows × tile_cols as the recipe scales them
// (MXFP8: e8m0 block scales; the others: fp32 tile scales).
void quantize_into(const Tensor& out, const Tensor& in, int64_t rows, int64_t tile_rows,
                   int64_t tile_cols, const Fp8Recipe& r) {
  if (r.scaling == Fp8Scaling::kMxfp8) {
    mxfp8_fake_quant(Context{}, out, in, rows, tile_rows, tile_cols);
  } else {
    fp8_fake_quant(Context{}, out, in, rows, tile_rows, tile_cols, r.pow2_scales);
  }
}

// A host copy of `t`, fake-quantized: its storage lives in `keep`.
Tensor quantized(std::vector<unsigned char>& keep, const Tensor& t, int64_t rows, int64_t tile_rows,
                 int64_t tile_cols, const Fp8Recipe& r) {
  keep.resize(t.nbytes());
  const Tensor out{keep.data(), t.dtype, t.device, t.shape};
  quantize_into(out, t, rows, tile_rows, tile_cols, r);
  return out;
}

// A recipe's tile length, 128 (blockwise) or 32 (MXFP8), and the rows of a weight's blocks: 128
// (blockwise's squares) or 1 (MXFP8's 1-D blocks along K).
int64_t tile_of(const Fp8Recipe& r) {
  return r.scaling == Fp8Scaling::kMxfp8 ? kMxBlock : kFp8Tile;
}
int64_t weight_rows_of(const Fp8Recipe& r) {
  return r.scaling == Fp8Scaling::kMxfp8 ? 1 : kFp8Tile;
}
bool tensorwise(const Fp8Recipe& r) { return r.scaling == Fp8Scaling::kTensorwise; }

// The three ways an operand is tiled (fp8.h): along its rows (1 × 128), in 128 × 128 blocks
// (weights), down its columns (128 × 1, for the weight gradient); tensorwise: one tile.
Tensor along_rows(std::vector<unsigned char>& keep, const Tensor& t, const Fp8Recipe& r) {
  if (tensorwise(r)) return quantized(keep, t, 1, 1, t.numel(), r);
  return quantized(keep, t, t.size(0), 1, tile_of(r), r);
}
Tensor in_blocks(std::vector<unsigned char>& keep, const Tensor& t, const Fp8Recipe& r) {
  if (tensorwise(r)) return quantized(keep, t, 1, 1, t.numel(), r);
  return quantized(keep, t, t.size(0), weight_rows_of(r), tile_of(r), r);
}
Tensor down_columns(std::vector<unsigned char>& keep, const Tensor& t, const Fp8Recipe& r) {
  if (tensorwise(r)) return quantized(keep, t, 1, 1, t.numel(), r);
  return quantized(keep, t, t.size(0), tile_of(r), 1, r);
}

// Expert e's weight [N, K] of a [E, N, K] tensor.
Tensor expert(const Tensor& w, int64_t e) {
  return w.view({w.size(0), w.size(1) * w.size(2)}).slice(e, e + 1).view({w.size(1), w.size(2)});
}

// The weights, each expert's blocks its own (one tensor scale when tensorwise).
Tensor experts_in_blocks(std::vector<unsigned char>& keep, const Tensor& w, const Fp8Recipe& r) {
  if (tensorwise(r)) return quantized(keep, w, 1, 1, w.numel(), r);
  keep.resize(w.nbytes());
  const Tensor out{keep.data(), w.dtype, w.device, w.shape};
  for (int64_t e = 0; e < w.size(0); ++e) {
    quantize_into(expert(out, e), expert(w, e), w.size(1), weight_rows_of(r), tile_of(r), r);
  }
  return out;
}

// Rows grouped by expert, in tiles down the columns that restart at each expert's first row.
Tensor groups_down_columns(std::vector<unsigned char>& keep, const Tensor& t,
                           const std::vector<int64_t>& counts, const Fp8Recipe& r) {
  if (tensorwise(r)) return quantized(keep, t, 1, 1, t.numel(), r);
  keep.resize(t.nbytes());
  const Tensor out{keep.data(), t.dtype, t.device, t.shape};
  int64_t row = 0;
  for (const int64_t n : counts) {
    if (n > 0) quantize_into(out.slice(row, row + n), t.slice(row, row + n), n, tile_of(r), 1, r);
    row += n;
  }
  return out;
}

// A row's scale bytes: blockwise fp32, MXFP8 e8m0 (2^(b - 127), 0xff NaN).
int64_t scale_bytes(const Fp8Recipe& r) { return r.scaling == Fp8Scaling::kMxfp8 ? 1 : 4; }

void put_scale(unsigned char* p, double s, const Fp8Recipe& r) {
  if (r.scaling == Fp8Scaling::kMxfp8) {
    int e = 0;
    std::frexp(s, &e);  // s = 2^(e - 1)
    *p = std::isnan(s) ? 0xff : static_cast<unsigned char>(e - 1 + 127);
  } else {
    const auto f = static_cast<float>(s);  // exact: the scales are fp32 values (fp8_scale)
    std::memcpy(p, &f, sizeof f);
  }
}

double get_scale(const unsigned char* p, const Fp8Recipe& r) {
  if (r.scaling == Fp8Scaling::kMxfp8) return *p == 0xff ? NAN : std::ldexp(1.0, *p - 127);
  float f = 0;
  std::memcpy(&f, p, sizeof f);
  return f;
}

template <class T>
void pack_rows(unsigned char* packed, const T* in, int64_t rows, int64_t cols, const Fp8Recipe& r) {
  const int64_t tile = tile_of(r), width = fp8_row_bytes(cols, r);
  for (int64_t row = 0; row < rows; ++row) {
    unsigned char* codes = packed + row * width;
    unsigned char* scales = codes + cols;
    for (int64_t c0 = 0; c0 < cols; c0 += tile) {
      const int64_t c1 = std::min(cols, c0 + tile);
      const double amax = tile_amax(in, cols, row, row + 1, c0, c1);
      const double s =
          r.scaling == Fp8Scaling::kMxfp8 ? mx_scale(amax) : fp8_scale(amax, r.pow2_scales);
      put_scale(scales + (c0 / tile) * scale_bytes(r), s, r);
      for (int64_t c = c0; c < c1; ++c) {
        // e4m3()'s value is one of e4m3's: the encoding is exact.
        codes[c] =
            float_to_f8e4m3(static_cast<float>(e4m3(static_cast<double>(in[row * cols + c]) / s)));
      }
    }
  }
}

template <class T>
void unpack_rows(T* out, const unsigned char* packed, int64_t rows, int64_t cols,
                 const Fp8Recipe& r) {
  const int64_t tile = tile_of(r), width = fp8_row_bytes(cols, r);
  for (int64_t row = 0; row < rows; ++row) {
    const unsigned char* codes = packed + row * width;
    const unsigned char* scales = codes + cols;
    for (int64_t c = 0; c < cols; ++c) {
      const double s = get_scale(scales + (c / tile) * scale_bytes(r), r);
      out[row * cols + c] = static_cast<T>(static_cast<double>(f8e4m3_to_float(codes[c])) * s);
    }
  }
}

void check_packed(const char* op, const Context& ctx, const Tensor& packed, const Tensor& rows,
                  const Fp8Recipe& r) {
  check_cpu(op, ctx);
  TMT_CHECK(!tensorwise(r), "{}: tensorwise FP8 has no row tiles to pack", op);
  TMT_CHECK(rows.rank() == 2 && (rows.dtype == DType::kF32 || rows.dtype == DType::kF64) &&
                packed.dtype == DType::kF8E4M3 &&
                packed.shape == (Shape{rows.size(0), fp8_row_bytes(rows.size(1), r)}),
            "{}: packed {} for rows {} (f32|f64)", op, packed.str(), rows.str());
}

}  // namespace

int64_t fp8_row_bytes(int64_t cols, const Fp8Recipe& recipe) {
  const int64_t tile = tile_of(recipe);
  return cols + (cols + tile - 1) / tile * scale_bytes(recipe);
}

void fp8_pack_rows(const Context& ctx, const Tensor& packed, const Tensor& in,
                   const Fp8Recipe& recipe) {
  check_packed("fp8_pack_rows", ctx, packed, in, recipe);
  auto* p = packed.ptr<unsigned char>();
  if (in.dtype == DType::kF32) {
    pack_rows(p, in.ptr<const float>(), in.size(0), in.size(1), recipe);
  } else {
    pack_rows(p, in.ptr<const double>(), in.size(0), in.size(1), recipe);
  }
}

void fp8_unpack_rows(const Context& ctx, const Tensor& out, const Tensor& packed,
                     const Fp8Recipe& recipe) {
  check_packed("fp8_unpack_rows", ctx, packed, out, recipe);
  const auto* p = packed.ptr<const unsigned char>();
  if (out.dtype == DType::kF32) {
    unpack_rows(out.ptr<float>(), p, out.size(0), out.size(1), recipe);
  } else {
    unpack_rows(out.ptr<double>(), p, out.size(0), out.size(1), recipe);
  }
}

void fp8_quantize_rows(const Context& ctx, const Tensor& out, const Tensor& in,
                       const Fp8Recipe& recipe) {
  check_cpu("fp8_quantize_rows", ctx);
  if (tensorwise(recipe)) return quantize_into(out, in, 1, 1, in.numel(), recipe);
  quantize_into(out, in, in.size(0), 1, tile_of(recipe), recipe);
}

double e4m3(double x) {
  if (std::isnan(x)) return x;
  const double a = std::fabs(x);
  if (a >= kE4m3Max) return std::copysign(kE4m3Max, x);  // satfinite, infinities included
  // The spacing of e4m3 values around a: 2^-9 below the normals, else 2^(e - 3) for a in
  // [2^e, 2^(e+1)). nearbyint rounds ties to even (the default rounding mode).
  double step = kSubnormalStep;
  if (a >= kMinNormal) {
    int e = 0;
    std::frexp(a, &e);  // a = m · 2^e, m in [0.5, 1): a in [2^(e-1), 2^e)
    step = std::ldexp(1.0, e - 1 - 3);
  }
  return std::copysign(std::nearbyint(a / step) * step, x);
}

double e2m1(double x) {
  if (std::isnan(x)) return x;
  const double a = std::fabs(x);
  if (a >= 6) return std::copysign(6.0, x);
  // Steps of 0.5 below 2 (the subnormal 0.5 included), 1 in [2, 4), 2 in [4, 6].
  const double step = a < 2 ? 0.5 : a < 4 ? 1.0 : 2.0;
  return std::copysign(std::nearbyint(a / step) * step, x);
}

double mx_scale(double amax) {
  if (!std::isfinite(amax)) return NAN;
  if (amax == 0) return 1;
  const int e = std::clamp(static_cast<int>(std::floor(std::log2(amax))) - 8, -127, 127);
  return std::ldexp(1.0, e);
}

double fp8_scale(double amax, bool pow2_scales) {
  if (!std::isfinite(amax)) return NAN;
  if (amax == 0) return 1;
  // fp32, as the GPU keeps it.
  const float s = static_cast<float>(amax / kE4m3Max);
  if (!pow2_scales) return s;
  return std::ldexp(1.0, static_cast<int>(std::ceil(std::log2(static_cast<double>(s)))));
}

void fp8_fake_quant(const Context& ctx, const Tensor& out, const Tensor& in, int64_t rows,
                    int64_t tile_rows, int64_t tile_cols, bool pow2_scales) {
  check_cpu("fp8_fake_quant", ctx);
  TMT_CHECK(out.shape == in.shape && out.dtype == in.dtype && rows > 0 && in.numel() % rows == 0 &&
                tile_rows > 0 && tile_cols > 0 &&
                (in.dtype == DType::kF32 || in.dtype == DType::kF64),
            "fp8_fake_quant: out {} / in {} as {} rows in {} x {} tiles (f32|f64)", out.str(),
            in.str(), rows, tile_rows, tile_cols);
  const int64_t cols = in.numel() / rows;
  if (in.dtype == DType::kF32) {
    fake_quant_tiles(out.ptr<float>(), in.ptr<const float>(), rows, cols, tile_rows, tile_cols,
                     pow2_scales);
  } else {
    fake_quant_tiles(out.ptr<double>(), in.ptr<const double>(), rows, cols, tile_rows, tile_cols,
                     pow2_scales);
  }
}

namespace {

void check_quant_args(const char* op, const Context& ctx, const Tensor& out, const Tensor& in,
                      int64_t rows) {
  check_cpu(op, ctx);
  TMT_CHECK(out.shape == in.shape && out.dtype == in.dtype && rows > 0 && in.numel() % rows == 0 &&
                (in.dtype == DType::kF32 || in.dtype == DType::kF64),
            "{}: out {} / in {} as {} rows (f32|f64)", op, out.str(), in.str(), rows);
}

}  // namespace

void mxfp8_fake_quant(const Context& ctx, const Tensor& out, const Tensor& in, int64_t rows,
                      int64_t tile_rows, int64_t tile_cols) {
  check_quant_args("mxfp8_fake_quant", ctx, out, in, rows);
  TMT_CHECK(tile_rows > 0 && tile_cols > 0, "mxfp8_fake_quant: {} x {} tiles", tile_rows,
            tile_cols);
  const int64_t cols = in.numel() / rows;
  if (in.dtype == DType::kF32) {
    mx_tiles(out.ptr<float>(), in.ptr<const float>(), rows, cols, tile_rows, tile_cols);
  } else {
    mx_tiles(out.ptr<double>(), in.ptr<const double>(), rows, cols, tile_rows, tile_cols);
  }
}

void nvfp4_fake_quant(const Context& ctx, const Tensor& out, const Tensor& in, int64_t rows) {
  check_quant_args("nvfp4_fake_quant", ctx, out, in, rows);
  const int64_t cols = in.numel() / rows;
  if (in.dtype == DType::kF32) {
    nvfp4_tiles(out.ptr<float>(), in.ptr<const float>(), rows, cols);
  } else {
    nvfp4_tiles(out.ptr<double>(), in.ptr<const double>(), rows, cols);
  }
}

void fp8_linear_fwd(const Context& ctx, const Tensor& y, const Tensor& x, const Tensor& weight,
                    const Fp8Recipe& recipe, bool accumulate) {
#if TMT_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    check_cuda_recipe("fp8_linear_fwd", recipe);
    return cuda::fp8_linear_fwd(ctx, y, x, weight, recipe.pow2_scales, accumulate);
  }
#endif
  check_cpu("fp8_linear_fwd", ctx);
  std::vector<unsigned char> qx, qw;
  linear_fwd(ctx, y, along_rows(qx, x, recipe), in_blocks(qw, weight, recipe), accumulate);
}

void fp8_linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                    const Tensor& x, const Tensor& weight, const Fp8Recipe& recipe,
                    bool accumulate_dx) {
#if TMT_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    check_cuda_recipe("fp8_linear_bwd", recipe);
    return cuda::fp8_linear_bwd(ctx, dx, dweight, dy, x, weight, recipe.pow2_scales, accumulate_dx);
  }
#endif
  check_cpu("fp8_linear_bwd", ctx);
  std::vector<unsigned char> q1, q2, q3;
  if (dx.defined()) {
    linear_bwd(ctx, dx, Tensor{}, along_rows(q1, dy, recipe), x, in_blocks(q2, weight, recipe),
               accumulate_dx);
  }
  if (dweight.defined()) {
    linear_bwd(ctx, Tensor{}, dweight, down_columns(q1, dy, recipe), down_columns(q3, x, recipe),
               weight);
  }
}

void fp8_grouped_linear_fwd(const Context& ctx, const Tensor& y, const Tensor& x,
                            const Tensor& weight, const std::vector<int64_t>& counts,
                            const Fp8Recipe& recipe, bool x_quantized) {
#if TMT_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    check_cuda_recipe("fp8_grouped_linear_fwd", recipe);
    TMT_CHECK(!x_quantized, "fp8_grouped_linear_fwd: CUDA quantizes the expert rows itself");
    return cuda::fp8_grouped_linear_fwd(ctx, y, x, weight, counts, recipe.pow2_scales);
  }
#endif
  check_cpu("fp8_grouped_linear_fwd", ctx);
  std::vector<unsigned char> qx_keep, qw_keep;
  const Tensor qx = x_quantized ? x : along_rows(qx_keep, x, recipe);
  const Tensor qw = experts_in_blocks(qw_keep, weight, recipe);
  int64_t row = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    const int64_t n = counts[e];
    if (n > 0) {
      linear_fwd(ctx, y.slice(row, row + n), qx.slice(row, row + n),
                 expert(qw, static_cast<int64_t>(e)));
    }
    row += n;
  }
}

void fp8_grouped_linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight,
                            const Tensor& dy, const Tensor& x, const Tensor& weight,
                            const std::vector<int64_t>& counts, const Fp8Recipe& recipe) {
#if TMT_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    check_cuda_recipe("fp8_grouped_linear_bwd", recipe);
    return cuda::fp8_grouped_linear_bwd(ctx, dx, dweight, dy, x, weight, counts,
                                        recipe.pow2_scales);
  }
#endif
  check_cpu("fp8_grouped_linear_bwd", ctx);
  std::vector<unsigned char> k1, k2, k3, k4;
  const Tensor dy_rows = along_rows(k1, dy, recipe), qw = experts_in_blocks(k2, weight, recipe);
  const Tensor dy_cols = groups_down_columns(k3, dy, counts, recipe);
  const Tensor x_cols = groups_down_columns(k4, x, counts, recipe);
  int64_t row = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    const int64_t n = counts[e];
    if (n > 0) {
      const auto i = static_cast<int64_t>(e);
      linear_bwd(ctx, dx.slice(row, row + n), Tensor{}, dy_rows.slice(row, row + n),
                 x.slice(row, row + n), expert(qw, i));
      linear_bwd(ctx, Tensor{}, expert(dweight, i), dy_cols.slice(row, row + n),
                 x_cols.slice(row, row + n), expert(weight, i));
    }
    row += n;
  }
}

bool fp8_available(Device device, std::string* why) {
  if (device == Device::kCpu) return true;
#if TMT_WITH_CUDA
  return cuda::fp8_linear_available(why);
#else
  if (why != nullptr) *why = "this build has no CUDA backend";
  return false;
#endif
}

size_t fp8_linear_workspace_bytes(Device device, int64_t n, int64_t k) {
#if TMT_WITH_CUDA
  if (device == Device::kCuda) return cuda::fp8_linear_workspace_bytes(n, k);
#endif
  (void)device, (void)n, (void)k;
  return 0;
}

}  // namespace tmt
