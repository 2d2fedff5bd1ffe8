// FP8 fake quantization (kernels/fp8.h) against values worked by hand: e4m3's grid (normals,
// subnormals, ties to even, saturation, NaN and infinities), the scales (amax / 448 in fp32, powers
// of two, zero tiles, non-finite tiles), the tiles of each GEMM operand, and the FP8 GEMMs as the
// dtype's GEMMs on the quantized operands.
#include "kernels/fp8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/grouped_linear.h"
#include "kernels/linear.h"

namespace tmt {
namespace {

Tensor host(std::vector<double>& v, Shape s) {
  return Tensor{v.data(), DType::kF64, Device::kCpu, s};
}

// The fp32 scale of a tile whose amax is `amax`.
double scale(double amax) { return static_cast<float>(amax / 448); }
// What a tile's largest element becomes: 448 times its fp32 scale (not always the element itself).
double top(double amax) { return 448 * scale(amax); }

TEST(Fp8, E4m3GridByHand) {
  EXPECT_EQ(e4m3(1.0), 1.0);
  EXPECT_EQ(e4m3(448.0), 448.0);  // the largest value
  EXPECT_EQ(e4m3(-0.0), -0.0);
  EXPECT_EQ(e4m3(1.0625), 1.0);   // halfway between 1 (mantissa 000) and 1.125: even
  EXPECT_EQ(e4m3(1.1875), 1.25);  // halfway between 1.125 (001) and 1.25 (010): even
  EXPECT_EQ(e4m3(1.07), 1.125);
  EXPECT_EQ(e4m3(250.0), 256.0);  // [128, 256) in steps of 16: 240 or 256
  EXPECT_EQ(e4m3(400.0), 384.0);  // [256, 448] in steps of 32: 384 (100) or 416 (101)
  EXPECT_EQ(e4m3(-149.33), -144.0);
  // Saturation (satfinite): past 448, infinities included, to ±448.
  EXPECT_EQ(e4m3(449.0), 448.0);
  EXPECT_EQ(e4m3(500.0), 448.0);
  EXPECT_EQ(e4m3(-1e9), -448.0);
  EXPECT_EQ(e4m3(std::numeric_limits<double>::infinity()), 448.0);
  EXPECT_TRUE(std::isnan(e4m3(std::nan(""))));
  // Subnormals: multiples of 2^-9 below 2^-6.
  const double sub = std::ldexp(1.0, -9);
  EXPECT_EQ(e4m3(sub), sub);
  EXPECT_EQ(e4m3(0.75 * sub), sub);
  EXPECT_EQ(e4m3(0.5 * sub), 0.0);      // halfway between 0 and 2^-9: even (0)
  EXPECT_EQ(e4m3(1.5 * sub), 2 * sub);  // halfway between 1 and 2 (·2^-9): even
  EXPECT_EQ(e4m3(7 * sub), 7 * sub);    // the largest subnormal
  EXPECT_EQ(e4m3(7.5 * sub), 8 * sub);  // rounds up to the smallest normal, 2^-6
  EXPECT_EQ(e4m3(0.25 * sub), 0.0);
  EXPECT_EQ(e4m3(std::ldexp(1.0, -6)), std::ldexp(1.0, -6));
  EXPECT_EQ(e4m3(std::ldexp(1.0625, -6)), std::ldexp(1.0, -6));  // steps of 2^-9 there
}

TEST(Fp8, ScalesByHand) {
  EXPECT_EQ(fp8_scale(3.0, false), static_cast<double>(static_cast<float>(3.0 / 448)));
  EXPECT_EQ(fp8_scale(100.0, true), 0.25);  // 100 / 448 = 0.223 -> 2^-2
  EXPECT_EQ(fp8_scale(448.0, true), 1.0);
  EXPECT_EQ(fp8_scale(0.0, false), 1.0);
  EXPECT_TRUE(std::isnan(fp8_scale(std::numeric_limits<double>::infinity(), false)));
  EXPECT_TRUE(std::isnan(fp8_scale(std::nan(""), true)));
}

TEST(Fp8, TilesQuantizeOnTheirOwn) {
  // [2, 256] in 1 x 128 tiles: four tiles. Tile (0, 0) holds 1 and 3 (amax 3: 1 -> 144 · 3/448),
  // tile (0, 1) a 1000 that does not touch the 1s of tile (0, 0), tile (1, 0) zeros (they stay
  // zero), tile (1, 1) a NaN (all NaN, the others untouched).
  std::vector<double> x(512, 0.0);
  x[0] = 1, x[1] = 3, x[128] = 1000, x[129] = 1;
  x[256 + 128] = std::nan(""), x[256 + 129] = 2;
  std::vector<double> q(512);
  fp8_fake_quant(Context{}, host(q, {2, 256}), host(x, {2, 256}), 2, 1, 128, false);
  const double s0 = static_cast<float>(3.0 / 448), s1 = static_cast<float>(1000.0 / 448);
  EXPECT_DOUBLE_EQ(q[0], 144 * s0);
  EXPECT_DOUBLE_EQ(q[1], 448 * s0);
  EXPECT_DOUBLE_EQ(q[128], 448 * s1);
  EXPECT_DOUBLE_EQ(q[129], e4m3(1 / s1) * s1);  // 1 / s1 = 0.448: 0.4375 at steps of 2^-5
  EXPECT_DOUBLE_EQ(e4m3(1 / s1), 0.4375);
  for (int c = 0; c < 128; ++c) EXPECT_EQ(q[256 + c], 0.0);
  for (int c = 128; c < 256; ++c) EXPECT_TRUE(std::isnan(q[256 + c]));
  // The same tensor in 128 x 1 tiles (down the columns): column 0 holds 1 and 0 (amax 1), column
  // 1 holds 3 and 0, column 129 holds 1 and 2 (amax 2).
  fp8_fake_quant(Context{}, host(q, {2, 256}), host(x, {2, 256}), 2, 128, 1, false);
  const double s2 = static_cast<float>(2.0 / 448);
  EXPECT_DOUBLE_EQ(q[0], top(1));
  EXPECT_DOUBLE_EQ(q[1], top(3));
  EXPECT_DOUBLE_EQ(q[129], e4m3(1 / s2) * s2);
  EXPECT_TRUE(std::isnan(q[128]));
  EXPECT_TRUE(std::isnan(q[256 + 128]));
  // An infinity makes its tile NaN too (the step is then skipped as non-finite).
  x[256 + 128] = std::numeric_limits<double>::infinity();
  fp8_fake_quant(Context{}, host(q, {2, 256}), host(x, {2, 256}), 2, 1, 128, false);
  EXPECT_TRUE(std::isnan(q[256 + 129]));
  EXPECT_DOUBLE_EQ(q[0], 144 * s0);
}

TEST(Fp8, LinearIsTheGemmOfTheQuantizedOperandsByHand) {
  // y = Q(x) Q(W)ᵀ with x = [1, 3] (1 x 128 tile, amax 3) and W = [0.5, 1.1] (one 128 x 128
  // block, amax 1.1): Q(x) = [144, 448] · 3/448, Q(W) = [208, 448] · 1.1/448 (0.5 / (1.1/448) =
  // 203.6 -> 208).
  std::vector<double> x = {1, 3}, w = {0.5, 1.1}, y(1);
  fp8_linear_fwd(Context{}, host(y, {1, 1}), host(x, {1, 2}), host(w, {1, 2}), Fp8Recipe{});
  const double sx = static_cast<float>(3.0 / 448), sw = static_cast<float>(1.1 / 448);
  EXPECT_NEAR(y[0], 144 * sx * 208 * sw + 448 * sx * 448 * sw, 1e-15);
  EXPECT_NEAR(y[0], 3.792474661045234, 1e-12);
  // The backward: dx = Q_rows(dy) Q(W), dW += Q_cols(dy)ᵀ Q_cols(x), here with T = 2 rows
  // x = [[1, 3], [2, -1]], dy = [[0.3], [-0.7]]: dy's rows are one value each (each its tile's
  // amax), its column
  // holds 0.3 and -0.7 (amax 0.7: 0.3 -> 192 · 0.7/448), x's columns [1, 2] (amax 2: 1 -> 224 ·
  // 2/448, exact) and [3, -1] (exact at amax 3: -1 -> -149.3 -> -144 · 3/448).
  std::vector<double> x2 = {1, 3, 2, -1}, dy = {0.3, -0.7}, dx(4), dw = {0, 0};
  fp8_linear_bwd(Context{}, host(dx, {2, 2}), host(dw, {1, 2}), host(dy, {2, 1}), host(x2, {2, 2}),
                 host(w, {1, 2}), Fp8Recipe{});
  const double qw0 = 208 * sw, qw1 = 448 * sw;
  EXPECT_NEAR(dx[0], top(0.3) * qw0, 1e-15);
  EXPECT_NEAR(dx[1], top(0.3) * qw1, 1e-15);
  EXPECT_NEAR(dx[2], -top(0.7) * qw0, 1e-15);
  const double sdy = static_cast<float>(0.7 / 448), s3 = static_cast<float>(3.0 / 448);
  const double qdy0 = e4m3(0.3 / sdy) * sdy, qdy1 = -448 * sdy;
  EXPECT_EQ(e4m3(0.3 / sdy), 192.0);
  EXPECT_EQ(e4m3(1 / scale(2)), 224.0);
  EXPECT_NEAR(dw[0], qdy0 * 224 * scale(2) + qdy1 * top(2), 1e-15);
  EXPECT_NEAR(dw[1], qdy0 * top(3) + qdy1 * (-144 * s3), 1e-15);
}

TEST(Fp8, TensorwiseUsesOneScaleAndGroupedTilesRestartPerExpert) {
  // Tensorwise: [1, 3, 1000]: one scale (1000/448) for all three.
  std::vector<double> x = {1, 3, 1000}, w = {1, 1, 1}, y(1);
  fp8_linear_fwd(Context{}, host(y, {1, 1}), host(x, {1, 3}), host(w, {1, 3}),
                 {.scaling = Fp8Scaling::kTensorwise});
  const double s = static_cast<float>(1000.0 / 448);
  EXPECT_NEAR(y[0], (e4m3(1 / s) + e4m3(3 / s) + 448) * s * top(1), 1e-12);
  // Two experts, 1 and 2 rows, K = 1: x = [4, 0.3, 2] with the 128 x 1 tiles of the weight
  // gradient restarting at row 1: expert 0's column is [4], expert 1's [0.3, 3], whose amax 3
  // (not the 4 of a tile over all three rows) sets the step 0.3 is rounded at.
  std::vector<double> xe = {4, 0.3, 3}, we = {1, 1}, dye = {1, 1, 1}, dxe(3), dwe = {0, 0};
  fp8_grouped_linear_bwd(Context{}, host(dxe, {3, 1}), host(dwe, {2, 1, 1}), host(dye, {3, 1}),
                         host(xe, {3, 1}), host(we, {2, 1, 1}), {1, 2}, Fp8Recipe{});
  const double s_e1 = scale(3), s_all = scale(4);
  EXPECT_DOUBLE_EQ(dwe[0], top(1) * top(4));
  EXPECT_DOUBLE_EQ(dwe[1], top(1) * (e4m3(0.3 / s_e1) * s_e1) + top(1) * top(3));
  EXPECT_EQ(e4m3(0.3 / s_e1), 44.0);   // 44.8 at steps of 4
  EXPECT_EQ(e4m3(0.3 / s_all), 32.0);  // 33.6 at steps of 4
  EXPECT_NE(e4m3(0.3 / s_e1) * s_e1, e4m3(0.3 / s_all) * s_all);
  // And the forward of the same experts equals linear on each expert's quantized rows.
  std::vector<double> ye(3);
  fp8_grouped_linear_fwd(Context{}, host(ye, {3, 1}), host(xe, {3, 1}), host(we, {2, 1, 1}), {1, 2},
                         Fp8Recipe{});
  // Each row a 1 x 128 tile of its own (K = 1), each expert's weight a block of one value.
  EXPECT_DOUBLE_EQ(ye[0], top(4) * top(1));
  EXPECT_DOUBLE_EQ(ye[1], top(0.3) * top(1));
  EXPECT_DOUBLE_EQ(ye[2], top(3) * top(1));
}

TEST(Fp8, BlackwellFormatsByHand) {
  // e2m1 (NVFP4's elements): 0, 0.5, 1, 1.5, 2, 3, 4, 6; ties to even, saturating at 6.
  EXPECT_EQ(e2m1(0.25), 0.0);  // 0 or 0.5 (odd): 0
  EXPECT_EQ(e2m1(0.75), 1.0);  // 0.5 (odd) or 1: 1
  EXPECT_EQ(e2m1(1.25), 1.0);
  EXPECT_EQ(e2m1(1.75), 2.0);
  EXPECT_EQ(e2m1(2.5), 2.0);
  EXPECT_EQ(e2m1(3.5), 4.0);
  EXPECT_EQ(e2m1(5.0), 4.0);
  EXPECT_EQ(e2m1(5.5), 6.0);
  EXPECT_EQ(e2m1(7.0), 6.0);
  EXPECT_EQ(e2m1(-0.3), -0.5);
  EXPECT_TRUE(std::isnan(e2m1(std::nan(""))));
  // MXFP8's e8m0 scale: 2^(floor(log2 amax) - 8).
  EXPECT_EQ(mx_scale(1.0), std::ldexp(1.0, -8));
  EXPECT_EQ(mx_scale(448.0), 1.0);
  EXPECT_EQ(mx_scale(500.0), 1.0);  // 500 / 1 saturates to 448
  EXPECT_EQ(mx_scale(0.001), std::ldexp(1.0, -18));
  EXPECT_EQ(mx_scale(0.0), 1.0);
  EXPECT_TRUE(std::isnan(mx_scale(std::numeric_limits<double>::infinity())));
  // Two MXFP8 blocks of 32: [1, 3, 500, 0...] (scale 1: 1, 3, 448) and [0.3, 0...] (amax 0.3:
  // scale 2^-10, 0.3 · 2^10 = 307.2 -> 320 at steps of 32).
  std::vector<double> x(64, 0.0), q(64);
  x[0] = 1, x[1] = 3, x[2] = 500, x[32] = 0.3;
  mxfp8_fake_quant(Context{}, host(q, {1, 64}), host(x, {1, 64}), 1, 1, 32);
  EXPECT_EQ(q[0], 1.0);
  EXPECT_EQ(q[1], 3.0);
  EXPECT_EQ(q[2], 448.0);
  EXPECT_EQ(q[32], 320.0 / 1024);
  // NVFP4, two blocks of 16 with a tensor amax of 6: s_t = 1/448 (fp32). Block 0 [6, 1, 0.3]: its
  // scale e4m3(6 / (6 s_t)) = 448, times s_t: 1 (to fp32), elements 6, 1, 0.5. Block 1 [0.6,
  // 0.2]: e4m3(0.6 / (6 s_t)) = e4m3(44.8) = 44, scale 44 s_t; 0.6 / (44/448) = 6.1 -> 6 and 0.2
  // -> 2.04 -> 2.
  std::vector<double> y(32, 0.0), r(32);
  y[0] = 6, y[1] = 1, y[2] = 0.3, y[16] = 0.6, y[17] = 0.2;
  nvfp4_fake_quant(Context{}, host(r, {1, 32}), host(y, {1, 32}), 1);
  const double s_t = static_cast<float>(1.0 / 448);
  EXPECT_DOUBLE_EQ(r[0], 6 * 448 * s_t);
  EXPECT_DOUBLE_EQ(r[1], 1 * 448 * s_t);
  EXPECT_DOUBLE_EQ(r[2], 0.5 * 448 * s_t);
  EXPECT_DOUBLE_EQ(r[16], 6 * 44 * s_t);
  EXPECT_DOUBLE_EQ(r[17], 2 * 44 * s_t);
  EXPECT_EQ(r[3], 0.0);
}

// The FP8 dispatch's wire format: a row's e4m3 codes, then its tiles' scales. One blockwise row of
// 130 columns (two tiles: 128 and 2) worked by hand, then rows of every kind of tile (zeros,
// subnormals, saturation, NaN) whose unpacked values are exactly fp8_quantize_rows', for the
// blockwise (fp32 and power-of-two scales) and MXFP8 recipes.
TEST(Fp8, PackedRowsByHandAndAsQuantizedRows) {
  const Fp8Recipe blockwise{}, pow2{.pow2_scales = true}, mx{.scaling = Fp8Scaling::kMxfp8};
  EXPECT_EQ(fp8_row_bytes(130, blockwise), 130 + 2 * 4);
  EXPECT_EQ(fp8_row_bytes(256, blockwise), 256 + 2 * 4);  // bf16 would take 512
  EXPECT_EQ(fp8_row_bytes(256, mx), 256 + 8);
  EXPECT_EQ(fp8_row_bytes(33, mx), 33 + 2);

  // Tile 0: 1 .. 128 / 4, amax 32, scale 32/448 = 1/14 (fp32); tile 1: {-3, 0}, scale 3/448.
  std::vector<double> row(130);
  for (int c = 0; c < 128; ++c) row[c] = (c + 1) / 4.0;
  row[128] = -3;
  row[129] = 0;
  std::vector<unsigned char> bytes(static_cast<size_t>(fp8_row_bytes(130, blockwise)));
  const Tensor packed{bytes.data(), DType::kF8E4M3, Device::kCpu, Shape{1, 138}};
  fp8_pack_rows(Context{}, packed, host(row, {1, 130}), blockwise);
  float s0 = 0, s1 = 0;
  std::memcpy(&s0, &bytes[130], 4);
  std::memcpy(&s1, &bytes[134], 4);
  EXPECT_EQ(s0, static_cast<float>(32.0 / 448));
  EXPECT_EQ(s1, static_cast<float>(3.0 / 448));
  EXPECT_EQ(bytes[127], 0x7e);  // 32 / s0 = 448: exponent 1111, mantissa 110
  EXPECT_EQ(bytes[128], 0xfe);  // -3 / s1 = -448
  EXPECT_EQ(bytes[129], 0x00);
  // 0.25 / s0 = 3.5: exponent 1 + 7 = 1000, mantissa 110 (3.5 = 1.75 · 2).
  EXPECT_EQ(bytes[0], 0x46);
  // MXFP8: amax 32 -> X = 2^(5 - 8) = 2^-3, e8m0 byte 124; 0.25 / X = 2 exactly.
  std::vector<unsigned char> mx_bytes(static_cast<size_t>(fp8_row_bytes(130, mx)));
  const Tensor mx_packed{mx_bytes.data(), DType::kF8E4M3, Device::kCpu, Shape{1, 130 + 5}};
  fp8_pack_rows(Context{}, mx_packed, host(row, {1, 130}), mx);
  EXPECT_EQ(mx_bytes[130], 127 + (3 - 8));  // block 0: amax 8 (elements 0.25 .. 8)
  EXPECT_EQ(mx_bytes[133], 127 + (5 - 8));  // block 3: amax 32
  EXPECT_EQ(mx_bytes[134], 127 + (1 - 8));  // block 4: amax 3 -> 2^(1 - 8)

  // 4 rows x 300 columns (tiles of 128, 128, 44 and of 32): ordinary values, a zero tile,
  // subnormal-sized values next to a large one, NaN.
  const int64_t rows = 4, cols = 300;
  std::vector<double> x(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows * cols; ++i) x[i] = std::sin(0.37 * static_cast<double>(i)) * 3;
  for (int64_t c = 128; c < 256; ++c) x[c] = 0;                    // row 0, tile 1: zeros
  x[cols + 5] = 1e4;                                               // row 1: 1e-3 of it is tiny
  for (int64_t c = 6; c < 40; ++c) x[cols + c] = 1e-3 * (c - 20);  // ... subnormal there
  x[2 * cols + 290] = std::nan("");                                // row 2, last tile
  for (const Fp8Recipe& r : {blockwise, pow2, mx}) {
    std::vector<unsigned char> wire(static_cast<size_t>(rows * fp8_row_bytes(cols, r)));
    const Tensor p{wire.data(), DType::kF8E4M3, Device::kCpu, Shape{rows, fp8_row_bytes(cols, r)}};
    std::vector<double> got(x.size()), want(x.size());
    fp8_pack_rows(Context{}, p, host(x, {rows, cols}), r);
    fp8_unpack_rows(Context{}, host(got, {rows, cols}), p, r);
    fp8_quantize_rows(Context{}, host(want, {rows, cols}), host(x, {rows, cols}), r);
    int nans = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      if (std::isnan(want[i])) {
        EXPECT_TRUE(std::isnan(got[i])) << i;
        ++nans;
      } else {
        EXPECT_EQ(got[i], want[i]) << i;
      }
    }
    // The NaN's tile alone: columns 256 .. 299 (blockwise) or 288 .. 299 (MXFP8).
    EXPECT_EQ(nans, r.scaling == Fp8Scaling::kMxfp8 ? 12 : 44);
    EXPECT_EQ(got[200], 0.0);
    EXPECT_NE(got[cols + 7], x[cols + 7]);  // quantized, not copied
  }
}

}  // namespace
}  // namespace tmt
