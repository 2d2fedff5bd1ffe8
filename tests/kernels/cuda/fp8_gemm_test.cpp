// FP8 on Hopper (kernels/cuda/fp8_quantize.h, fp8_gemm_sm90.h) against the CPU fake-quant
// reference that defines fp8.recipe blockwise (kernels/fp8.h):
// - each quantizer, from bf16 and from f32, with and without power-of-two scales, on shapes whose
//   last tiles are cut short and with a zero tile, a NaN tile, an infinity and values near e4m3's
//   subnormals: every code times its scale equals fp8_fake_quant's value for the same tiles, bit
//   for bit (NaN where the reference is NaN), and the blocks' transposed codes and scales equal
//   the untransposed ones;
// - the three GEMMs of a linear layer from those codes — forward y = x Wᵀ and dgrad dx = dy W in
//   bf16, wgrad dW += dyᵀ x in f32 onto a non-zero dW — against fp8_linear_fwd / fp8_linear_bwd in
//   f32 on the same bf16-rounded operands: relative error by norm 5e-3 for bf16 outputs (their
//   rounding), 1e-5 for the f32 dW (the order of the fp32 sums). A wrong scale layout or tile
//   orientation is off by O(1).
// Shapes: every tile full (256, 256, 256) and every last tile cut short (T 336, K 384, N 272).
// Then kernels/fp8.h's linear and expert ops on a CUDA context (kernels/cuda/fp8_linear.h: rows in
// chunks, accumulation, uneven experts) against the same ops on the CPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/base/arena.h"
#include "kernels/base/dtype.h"
#include "kernels/base/workspace.h"
#include "kernels/cuda/fp8_gemm_sm90.h"
#include "kernels/cuda/fp8_quantize.h"
#include "kernels/fp8.h"
#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};
constexpr int64_t kTile = 128;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Host bytes of a device tensor.
std::vector<uint8_t> bytes_of(const Tensor& device) {
  std::vector<uint8_t> out(device.nbytes());
  cuda::copy(out.data(), device.data, out.size());
  return out;
}

std::vector<float> floats_of(const Tensor& device) {
  std::vector<float> out(static_cast<size_t>(device.numel()));
  cuda::copy(out.data(), device.data, device.nbytes());
  return out;
}

// Random values with the cases a quantizer must get right: the first tile of row 0 (and so
// block (0, 0)'s first row) all zero, a NaN in row 1 and an infinity in row 2 (their tiles, and
// the blocks and column tiles holding them, NaN throughout), and a row of values around
// 2^-6 · amax / 448 (e4m3's subnormals after scaling). Rounded to bf16.
void fill_operand(const Tensor& t, uint64_t seed, double std, bool specials) {
  test::fill_normal(t, seed, std);
  float* p = t.ptr<float>();
  const int64_t cols = t.size(1);
  if (specials) {
    for (int64_t c = 0; c < std::min<int64_t>(cols, kTile); ++c) p[c] = 0;
    p[1 * cols + 5] = NAN;
    p[2 * cols + cols - 1] = INFINITY;
    for (int64_t c = 0; c < cols; ++c) p[3 * cols + c] *= static_cast<float>(c % 3 == 0 ? 1e-3 : 1);
  }
  test::round_to(t, DType::kBF16);
}

bool same(double got, double want) { return (std::isnan(got) && std::isnan(want)) || got == want; }

struct Shape {
  int64_t t, k, n;
};

std::string name(const Shape& s) {
  return "T=" + std::to_string(s.t) + " K=" + std::to_string(s.k) + " N=" + std::to_string(s.n);
}

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> all = {{256, 256, 256}, {336, 384, 272}};
  return all;
}

// The quantizers on one [rows, cols] operand from `dtype`.
void check_quantizers(int64_t rows, int64_t cols, DType dtype, bool pow2, uint64_t seed) {
  SCOPED_TRACE(std::to_string(rows) + " x " + std::to_string(cols) + " from " +
               std::string(dtype_name(dtype)) + (pow2 ? ", pow2" : ""));
  const size_t bytes = 16 * static_cast<size_t>(rows * cols) + (1 << 20);
  Arena host(Device::kCpu, bytes, "host");
  Arena dev(Device::kCuda, bytes, "device");
  Tensor in = host.alloc(DType::kF32, {rows, cols});
  fill_operand(in, seed, 1.0, true);
  const Tensor in_d = test::to_device_as(dev, host, in, dtype);
  const std::vector<double> x = test::to_doubles(in);

  // 1 x 128 tiles.
  {
    Tensor want = host.alloc(DType::kF32, {rows, cols});
    fp8_fake_quant(kCpu, want, in, rows, 1, kTile, pow2);
    const std::vector<double> w = test::to_doubles(want);
    const Tensor codes = dev.alloc(DType::kF8E4M3, {rows, cols});
    const Tensor scales = dev.alloc(DType::kF32, {ceil_div(cols, kTile) * rows});
    test::poison(codes);
    test::poison(scales);
    cuda::fp8_quantize_rows(test::gpu(), codes, scales, in_d, pow2);
    const std::vector<uint8_t> q = bytes_of(codes);
    const std::vector<float> s = floats_of(scales);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const auto i = static_cast<size_t>(r * cols + c);
        const double got = static_cast<double>(f8e4m3_to_float(q[i])) *
                           s[static_cast<size_t>((c / kTile) * rows + r)];
        ASSERT_TRUE(same(got, w[i]))
            << "rows: [" << r << ", " << c << "] x " << x[i] << " got " << got << " want " << w[i];
      }
    }
  }
  // 128 x 1 tiles, transposed.
  {
    Tensor want = host.alloc(DType::kF32, {rows, cols});
    fp8_fake_quant(kCpu, want, in, rows, kTile, 1, pow2);
    const std::vector<double> w = test::to_doubles(want);
    const Tensor codes = dev.alloc(DType::kF8E4M3, {cols, rows});
    const Tensor scales = dev.alloc(DType::kF32, {ceil_div(rows, kTile) * cols});
    test::poison(codes);
    test::poison(scales);
    cuda::fp8_quantize_columns(test::gpu(), codes, scales, in_d, pow2);
    const std::vector<uint8_t> q = bytes_of(codes);
    const std::vector<float> s = floats_of(scales);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const auto i = static_cast<size_t>(r * cols + c);
        const double got =
            static_cast<double>(f8e4m3_to_float(q[static_cast<size_t>(c * rows + r)])) *
            s[static_cast<size_t>((r / kTile) * cols + c)];
        ASSERT_TRUE(same(got, w[i])) << "columns: [" << r << ", " << c << "] x " << x[i] << " got "
                                     << got << " want " << w[i];
      }
    }
  }
  // 128 x 128 blocks and their transpose.
  {
    Tensor want = host.alloc(DType::kF32, {rows, cols});
    fp8_fake_quant(kCpu, want, in, rows, kTile, kTile, pow2);
    const std::vector<double> w = test::to_doubles(want);
    const int64_t nb = ceil_div(rows, kTile), kb = ceil_div(cols, kTile);
    const Tensor codes = dev.alloc(DType::kF8E4M3, {rows, cols});
    const Tensor codes_t = dev.alloc(DType::kF8E4M3, {cols, rows});
    const Tensor scales = dev.alloc(DType::kF32, {nb * kb});
    const Tensor scales_t = dev.alloc(DType::kF32, {nb * kb});
    for (const Tensor& t : {codes, codes_t, scales, scales_t}) test::poison(t);
    cuda::fp8_quantize_blocks(test::gpu(), codes, scales, codes_t, scales_t, in_d, pow2);
    const std::vector<uint8_t> q = bytes_of(codes), qt = bytes_of(codes_t);
    const std::vector<float> s = floats_of(scales), st = floats_of(scales_t);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const auto i = static_cast<size_t>(r * cols + c);
        const auto b = static_cast<size_t>((c / kTile) * nb + r / kTile);
        const double got = static_cast<double>(f8e4m3_to_float(q[i])) * s[b];
        ASSERT_TRUE(same(got, w[i])) << "blocks: [" << r << ", " << c << "] x " << x[i] << " got "
                                     << got << " want " << w[i];
        ASSERT_EQ(qt[static_cast<size_t>(c * rows + r)], q[i])
            << "transposed code [" << c << ", " << r << "]";
        ASSERT_TRUE(same(st[static_cast<size_t>((r / kTile) * kb + c / kTile)], s[b]))
            << "transposed scale of block (" << r / kTile << ", " << c / kTile << ")";
      }
    }
  }
}

TEST(CudaFp8, QuantizersMatchFakeQuant) {
  uint64_t seed = 11;
  for (const DType dtype : {DType::kBF16, DType::kF32}) {
    for (const bool pow2 : {false, true}) {
      check_quantizers(200, 320, dtype, pow2, seed++);  // tiles cut short both ways
      check_quantizers(256, 128, dtype, pow2, seed++);  // whole tiles
    }
  }
}

// A device buffer of at least `bytes` for CUTLASS's scratch.
Tensor workspace(Arena& dev, size_t bytes) {
  return dev.alloc(DType::kF8E4M3, {static_cast<int64_t>(std::max<size_t>(bytes, 16))});
}

void run_gemm(Arena& dev, const cuda::Fp8Gemm& g) {
  ASSERT_TRUE(cuda::fp8_gemm_supported(g)) << "m " << g.m << " n " << g.n << " k " << g.k;
  const Tensor ws = workspace(dev, cuda::fp8_gemm_workspace(g));
  cuda::fp8_gemm(g, ws.data, ws.nbytes());
}

TEST(CudaFp8, LinearGemmsMatchFakeQuantReference) {
  if (!cuda::fp8_gemm_sm90_compiled()) GTEST_SKIP() << "built without sm_90a (TMT_CUDA_ARCHS)";
  int major = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  if (major != 9) GTEST_SKIP() << "the FP8 GEMMs are sm_90a kernels; this GPU is sm_" << major;
  uint64_t seed = 100;
  for (const Shape& sh : shapes()) {
    SCOPED_TRACE(name(sh));
    const int64_t t = sh.t, k = sh.k, n = sh.n;
    const size_t bytes = 32 * static_cast<size_t>(t * k + t * n + n * k) + (1 << 22);
    Arena host(Device::kCpu, bytes, "host");
    Arena dev(Device::kCuda, bytes, "device");
    Tensor x = host.alloc(DType::kF32, {t, k});
    Tensor w = host.alloc(DType::kF32, {n, k});
    Tensor dy = host.alloc(DType::kF32, {t, n});
    Tensor dw = host.alloc(DType::kF32, {n, k});
    fill_operand(x, seed++, 1.0, false);
    fill_operand(w, seed++, 0.05, false);
    fill_operand(dy, seed++, 1e-3, false);
    test::fill_normal(dw, seed++, 1e-2);
    const Tensor dw_d = test::to_device(dev, dw);  // f32, before the +=

    const Fp8Recipe recipe{.scaling = Fp8Scaling::kBlockwise};
    Tensor y = host.alloc(DType::kF32, {t, n});
    Tensor dx = host.alloc(DType::kF32, {t, k});
    fp8_linear_fwd(kCpu, y, x, w, recipe);
    fp8_linear_bwd(kCpu, dx, dw, dy, x, w, recipe);  // dw: before + dyᵀ x

    const Tensor xd = test::to_device_as(dev, host, x, DType::kBF16);
    const Tensor wd = test::to_device_as(dev, host, w, DType::kBF16);
    const Tensor dyd = test::to_device_as(dev, host, dy, DType::kBF16);
    const auto alloc_codes = [&](int64_t r, int64_t c) {
      return dev.alloc(DType::kF8E4M3, {r, c});
    };
    const auto alloc_scales = [&](int64_t count) { return dev.alloc(DType::kF32, {count}); };
    const Tensor x_q = alloc_codes(t, k), x_s = alloc_scales(ceil_div(k, kTile) * t);
    const Tensor dy_q = alloc_codes(t, n), dy_s = alloc_scales(ceil_div(n, kTile) * t);
    const int64_t blocks = ceil_div(n, kTile) * ceil_div(k, kTile);
    const Tensor w_q = alloc_codes(n, k), w_s = alloc_scales(blocks);
    const Tensor wt_q = alloc_codes(k, n), wt_s = alloc_scales(blocks);
    const Tensor dyt_q = alloc_codes(n, t), dyt_s = alloc_scales(ceil_div(t, kTile) * n);
    const Tensor xt_q = alloc_codes(k, t), xt_s = alloc_scales(ceil_div(t, kTile) * k);
    const Context& gpu = test::gpu();
    cuda::fp8_quantize_rows(gpu, x_q, x_s, xd, false);
    cuda::fp8_quantize_rows(gpu, dy_q, dy_s, dyd, false);
    cuda::fp8_quantize_blocks(gpu, w_q, w_s, wt_q, wt_s, wd, false);
    cuda::fp8_quantize_columns(gpu, dyt_q, dyt_s, dyd, false);
    cuda::fp8_quantize_columns(gpu, xt_q, xt_s, xd, false);

    const auto close = [&](const Tensor& got_device, const Tensor& want, double rtol,
                           const char* what) {
      test::expect_close(test::to_doubles(test::to_host(host, got_device)), test::to_doubles(want),
                         rtol, what);
    };
    const Tensor yd = dev.alloc(DType::kBF16, {t, n});
    test::poison(yd);
    run_gemm(dev, {.kind = cuda::Fp8GemmKind::kRowsByBlocks,
                   .m = t,
                   .n = n,
                   .k = k,
                   .a = x_q.data,
                   .a_scales = x_s.ptr<float>(),
                   .b = w_q.data,
                   .b_scales = w_s.ptr<float>(),
                   .d = yd.data});
    close(yd, y, 5e-3, "forward y");

    const Tensor dxd = dev.alloc(DType::kBF16, {t, k});
    test::poison(dxd);
    run_gemm(dev, {.kind = cuda::Fp8GemmKind::kRowsByBlocks,
                   .m = t,
                   .n = k,
                   .k = n,
                   .a = dy_q.data,
                   .a_scales = dy_s.ptr<float>(),
                   .b = wt_q.data,
                   .b_scales = wt_s.ptr<float>(),
                   .d = dxd.data});
    close(dxd, dx, 5e-3, "dgrad dx");

    run_gemm(dev, {.kind = cuda::Fp8GemmKind::kRowsByRows,
                   .m = n,
                   .n = k,
                   .k = t,
                   .a = dyt_q.data,
                   .a_scales = dyt_s.ptr<float>(),
                   .b = xt_q.data,
                   .b_scales = xt_s.ptr<float>(),
                   .d = dw_d.data,
                   .accumulate = true});
    close(dw_d, dw, 1e-5, "wgrad dW (accumulated)");
  }
}

// kernels/fp8.h's ops on a CUDA context (kernels/cuda/fp8_linear.h) against the same ops on the
// CPU: a linear at 4200 rows (two chunks of rows, the second cut short and not a multiple of 16)
// with the forward's and dgrad's accumulate; the experts with uneven counts (an empty expert, one
// of 1 row, one of 150) — y, dx written, dW accumulated onto a non-zero dW, f32 throughout on the
// CPU and bf16 operands on the GPU.
TEST(CudaFp8, LinearOpsMatchCpuReference) {
  if (!cuda::fp8_gemm_sm90_compiled()) GTEST_SKIP() << "built without sm_90a (TMT_CUDA_ARCHS)";
  std::string why;
  if (!fp8_available(Device::kCuda, &why)) GTEST_SKIP() << why;
  const Fp8Recipe recipe{.scaling = Fp8Scaling::kBlockwise};
  const int64_t k = 256, n = 384;
  Arena host(Device::kCpu, size_t{256} << 20, "host");
  Arena dev(Device::kCuda, size_t{256} << 20, "device");
  Workspace ws;
  ws.reserve(fp8_linear_workspace_bytes(Device::kCuda, n, k));
  ws.allocate(Device::kCuda);
  const Context gpu{Device::kCuda, nullptr, nullptr, &ws};
  const auto close = [&](const Tensor& got_device, const Tensor& want, double rtol,
                         const char* what) {
    test::expect_close(test::to_doubles(test::to_host(host, got_device)), test::to_doubles(want),
                       rtol, what);
  };
  uint64_t seed = 300;
  {
    SCOPED_TRACE("linear, 4200 rows");
    const int64_t rows = 4200;
    Tensor x = host.alloc(DType::kF32, {rows, k}), w = host.alloc(DType::kF32, {n, k});
    Tensor dy = host.alloc(DType::kF32, {rows, n}), dw = host.alloc(DType::kF32, {n, k});
    Tensor y = host.alloc(DType::kF32, {rows, n}), dx = host.alloc(DType::kF32, {rows, k});
    fill_operand(x, seed++, 1.0, false);
    fill_operand(w, seed++, 0.05, false);
    fill_operand(dy, seed++, 1e-3, false);
    fill_operand(y, seed++, 1.0, false);    // accumulated onto
    fill_operand(dx, seed++, 1e-3, false);  // accumulated onto
    test::fill_normal(dw, seed++, 1e-2);
    const Tensor xd = test::to_device_as(dev, host, x, DType::kBF16);
    const Tensor wd = test::to_device_as(dev, host, w, DType::kBF16);
    const Tensor dyd = test::to_device_as(dev, host, dy, DType::kBF16);
    const Tensor yd = test::to_device_as(dev, host, y, DType::kBF16);
    const Tensor dxd = test::to_device_as(dev, host, dx, DType::kBF16);
    const Tensor dwd = test::to_device(dev, dw);
    fp8_linear_fwd(kCpu, y, x, w, recipe, /*accumulate=*/true);
    fp8_linear_bwd(kCpu, dx, dw, dy, x, w, recipe, /*accumulate_dx=*/true);
    fp8_linear_fwd(gpu, yd, xd, wd, recipe, true);
    fp8_linear_bwd(gpu, dxd, dwd, dyd, xd, wd, recipe, true);
    close(yd, y, 5e-3, "y += x Wᵀ");
    close(dxd, dx, 5e-3, "dx += dy W");
    close(dwd, dw, 1e-5, "dW += dyᵀ x");
  }
  {
    SCOPED_TRACE("experts");
    const std::vector<int64_t> counts = {40, 0, 1, 150};
    const int64_t rows = 191, e = 4;
    Tensor x = host.alloc(DType::kF32, {rows, k}), w = host.alloc(DType::kF32, {e, n, k});
    Tensor dy = host.alloc(DType::kF32, {rows, n}), dw = host.alloc(DType::kF32, {e, n, k});
    Tensor y = host.alloc(DType::kF32, {rows, n}), dx = host.alloc(DType::kF32, {rows, k});
    fill_operand(x, seed++, 1.0, false);
    fill_operand(w.view({e * n, k}), seed++, 0.05, false);
    fill_operand(dy, seed++, 1e-3, false);
    test::fill_normal(dw, seed++, 1e-2);
    const Tensor xd = test::to_device_as(dev, host, x, DType::kBF16);
    const Tensor wd = test::to_device_as(dev, host, w, DType::kBF16);
    const Tensor dyd = test::to_device_as(dev, host, dy, DType::kBF16);
    const Tensor dwd = test::to_device(dev, dw);
    const Tensor yd = dev.alloc(DType::kBF16, {rows, n}), dxd = dev.alloc(DType::kBF16, {rows, k});
    test::poison(yd);
    test::poison(dxd);
    fp8_grouped_linear_fwd(kCpu, y, x, w, counts, recipe);
    fp8_grouped_linear_bwd(kCpu, dx, dw, dy, x, w, counts, recipe);
    fp8_grouped_linear_fwd(gpu, yd, xd, wd, counts, recipe);
    fp8_grouped_linear_bwd(gpu, dxd, dwd, dyd, xd, wd, counts, recipe);
    close(yd, y, 5e-3, "experts y");
    close(dxd, dx, 5e-3, "experts dx");
    close(dwd, dw, 1e-5, "experts dW (expert 1 unchanged, the others accumulated)");
  }
}

TEST(CudaFp8, RefusesMisalignedShapes) {
  // K not a multiple of 16: a row is not whole 16-byte TMA units.
  const cuda::Fp8Gemm g{.m = 128, .n = 128, .k = 200};
  EXPECT_FALSE(cuda::fp8_gemm_supported(g));
  const cuda::Fp8Gemm h{.m = 128, .n = 136, .k = 256};
  EXPECT_FALSE(cuda::fp8_gemm_supported(h));
}

}  // namespace
}  // namespace tmt
