// rope: tables without scaling against the closed form; yarn with factor 1 equal to none; yarn at
// the two ends of its ramp equal to pure extrapolation / interpolation (and the attention factor
// folded in); the attention factor by transformers' rule; yarn without truncation; partial rotary
// tables; the Llama 4 position scale; hand-rotated vectors (rotate-half, interleaved, partial);
// interleaved equal to rotate-half on permuted dims; fp64 finite differences of the backward with
// yarn tables (m != 1, so R^T differs from R^-1) in every layout, partial or not, scaled or not;
// R^T R = 1 without scaling; f32 vs f64; in-place.
#include "kernels/rope.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <vector>

#include "kernels/base/arena.h"
#include "kernels/cpu/rope.h"
#include "tests/support/compare.h"
#include "tests/support/grad_check.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};
using V = std::vector<double>;

RopeParams yarn_params() {
  RopeParams p;
  p.head_dim = 64;
  p.theta = 10000.0;
  p.scaling = RopeScalingType::kYarn;
  p.factor = 8.0;
  p.original_max_seq_len = 4096;
  p.beta_fast = 32.0;
  p.beta_slow = 1.0;
  p.mscale = 1.0;
  p.mscale_all_dim = 0.5;  // m = (0.1 ln 8 + 1) / (0.05 ln 8 + 1)
  return p;
}

TEST(RopeTables, NoneIsPlainRope) {
  const int64_t s_max = 50, dh = 12;
  Arena a(Device::kCpu, 1 << 16, "test");
  Tensor cos = a.alloc(DType::kF64, {s_max, dh / 2}), sin = a.alloc(DType::kF64, {s_max, dh / 2});
  RopeParams p;
  p.head_dim = dh;
  p.theta = 500000.0;
  p.factor = 4.0;  // ignored without scaling
  rope_tables(kCpu, cos, sin, p);
  V want_c, want_s;
  for (int64_t pos = 0; pos < s_max; ++pos) {
    for (int64_t i = 0; i < dh / 2; ++i) {
      const double angle = static_cast<double>(pos) / std::pow(500000.0, 2.0 * i / dh);
      want_c.push_back(std::cos(angle));
      want_s.push_back(std::sin(angle));
    }
  }
  EXPECT_TRUE(test::all_close(test::to_doubles(cos), want_c, 1e-14));
  EXPECT_TRUE(test::all_close(test::to_doubles(sin), want_s, 1e-14));

  // yarn with factor 1 interpolates nothing and scales nothing.
  Tensor cos1 = a.alloc(DType::kF64, {s_max, dh / 2}), sin1 = a.alloc(DType::kF64, {s_max, dh / 2});
  p.scaling = RopeScalingType::kYarn;
  p.factor = 1.0;
  p.original_max_seq_len = 32;
  rope_tables(kCpu, cos1, sin1, p);
  EXPECT_TRUE(test::all_close(cos1, cos, 1e-15));
  EXPECT_TRUE(test::all_close(sin1, sin, 1e-15));
}

TEST(RopeTables, YarnRampEnds) {
  const RopeParams p = yarn_params();
  const int64_t s_max = 300, half = p.head_dim / 2;
  // By hand: dim(r) = 64 ln(4096 / (2 pi r)) / (2 ln 1e4); dim(32) = 10.47 -> low 10,
  // dim(1) = 22.51 -> high 23.
  const double low = 10, high = 23;
  const double m = (0.1 * std::log(8.0) + 1.0) / (0.05 * std::log(8.0) + 1.0);
  Arena a(Device::kCpu, 1 << 20, "test");
  Tensor cos = a.alloc(DType::kF64, {s_max, half}), sin = a.alloc(DType::kF64, {s_max, half});
  rope_tables(kCpu, cos, sin, p);
  const double* c = cos.ptr<double>();
  const double* s = sin.ptr<double>();
  int extrapolated = 0, interpolated = 0, mixed = 0;
  for (int64_t i = 0; i < half; ++i) {
    const double f = std::pow(10000.0, -2.0 * static_cast<double>(i) / 64.0);
    double inv_freq = 0;
    if (i <= low) {
      inv_freq = f;
      ++extrapolated;
    } else if (i >= high) {
      inv_freq = f / 8.0;
      ++interpolated;
    } else {
      const double ramp = (static_cast<double>(i) - low) / (high - low);
      inv_freq = f * (1 - ramp) + f / 8.0 * ramp;
      ++mixed;
    }
    for (int64_t pos = 0; pos < s_max; ++pos) {
      const double angle = static_cast<double>(pos) * inv_freq;
      ASSERT_NEAR(c[pos * half + i], m * std::cos(angle), 1e-12) << "pos " << pos << " i " << i;
      ASSERT_NEAR(s[pos * half + i], m * std::sin(angle), 1e-12) << "pos " << pos << " i " << i;
    }
  }
  EXPECT_EQ(extrapolated, 11);
  EXPECT_EQ(interpolated, 9);
  EXPECT_EQ(mixed, 12);
  // Position 0: no rotation, only the attention factor.
  EXPECT_NEAR(c[0], m, 1e-15);
  EXPECT_NEAR(s[0], 0.0, 1e-15);
}

TEST(Rope, RotatesByHand) {
  Arena a(Device::kCpu, 1 << 16, "test");
  RopeParams p;
  p.head_dim = 4;  // inv_freq = [1, 1e-2]
  Tensor cos = a.alloc(DType::kF64, {3, 2}), sin = a.alloc(DType::kF64, {3, 2});
  rope_tables(kCpu, cos, sin, p);
  Tensor x = a.alloc(DType::kF64, {2, 1, 4}), y = a.alloc(DType::kF64, {2, 1, 4});
  Tensor pos = a.alloc(DType::kI32, {2});
  const V xv = {1, 0, 0, 0, 0, 2, 0, 3};
  for (size_t i = 0; i < xv.size(); ++i) x.ptr<double>()[i] = xv[i];
  pos.ptr<int32_t>()[0] = 1;
  pos.ptr<int32_t>()[1] = 2;
  rope_fwd(kCpu, y, x, pos, cos, sin);
  // Token 0 (p = 1): pair (0, 2) = (1, 0) turns by 1 rad. Token 1 (p = 2): pair (1, 3) = (2, 3)
  // turns by 0.02 rad; pair (0, 2) is zero.
  const double c = std::cos(0.02), s = std::sin(0.02);
  const V want = {std::cos(1.0), 0, std::sin(1.0), 0, 0, 2 * c - 3 * s, 0, 3 * c + 2 * s};
  EXPECT_TRUE(test::all_close(test::to_doubles(y), want, 1e-15));
}

struct Variant {
  RopeLayout layout = RopeLayout::kHalf;
  int64_t rotary_dim = 0;  // 0 = Dh
  bool scaled = false;     // the Llama 4 position scale
};

class RopeGradient : public ::testing::TestWithParam<Variant> {};

TEST_P(RopeGradient, F64FiniteDifferencesWithYarn) {
  const Variant v = GetParam();
  RopeParams p = yarn_params();
  p.head_dim = 12;
  p.rotary_dim = v.rotary_dim;
  p.original_max_seq_len = 16;
  p.beta_fast = 4.0;  // ramp inside the pairs
  p.beta_slow = 0.5;
  const int64_t n_tokens = 7, heads = 3, dh = p.head_dim, half = p.rotated() / 2, s_max = 40;
  Arena a(Device::kCpu, 1 << 18, "test");
  Tensor cos = a.alloc(DType::kF64, {s_max, half}), sin = a.alloc(DType::kF64, {s_max, half});
  rope_tables(kCpu, cos, sin, p);
  ASSERT_GT(std::fabs(cos.ptr<double>()[0] - 1.0), 0.05);  // m != 1: R is not orthogonal
  RopeApply how{.layout = v.layout};
  if (v.scaled) {
    how.scale = a.alloc(DType::kF64, {s_max});
    rope_position_scale(kCpu, how.scale, 0.3, 8);  // changes at 8, 16, 24, 32
  }
  Tensor x = a.alloc(DType::kF64, {n_tokens, heads, dh}), y = a.alloc(DType::kF64, x.shape);
  Tensor dy = a.alloc(DType::kF64, x.shape), dx = a.alloc(DType::kF64, x.shape);
  Tensor pos = a.alloc(DType::kI32, {n_tokens});
  test::fill_normal(x, 1);
  test::fill_normal(dy, 2);
  test::fill_normal(dx, 3);
  test::fill_uniform(pos, 4, 0, static_cast<double>(s_max));
  auto loss = [&] {
    rope_fwd(kCpu, y, x, pos, cos, sin, how);
    return test::dot(dy, y);
  };
  const V numeric = test::numeric_gradient(loss, x);
  rope_bwd(kCpu, dx, dy, pos, cos, sin, how);
  test::expect_close(test::to_doubles(dx), numeric, 1e-8, "dx vs finite differences");

  // In place: dx over dy; y over x.
  rope_bwd(kCpu, dy, dy, pos, cos, sin, how);
  EXPECT_TRUE(test::all_close(dy, dx, 0.0));
  rope_fwd(kCpu, y, x, pos, cos, sin, how);
  rope_fwd(kCpu, x, x, pos, cos, sin, how);
  EXPECT_TRUE(test::all_close(x, y, 0.0));
}

INSTANTIATE_TEST_SUITE_P(
    Variants, RopeGradient,
    ::testing::Values(Variant{}, Variant{.layout = RopeLayout::kInterleaved},
                      Variant{.rotary_dim = 8}, Variant{.scaled = true},
                      Variant{.layout = RopeLayout::kInterleaved, .rotary_dim = 4, .scaled = true},
                      Variant{.rotary_dim = 6, .scaled = true}));

TEST(RopeTables, AttentionFactorIsTransformers) {
  RopeParams p = yarn_params();  // s = 8
  const double g = 0.1 * std::log(8.0) + 1.0;
  p.mscale = p.mscale_all_dim = 0.0;
  EXPECT_DOUBLE_EQ(cpu::rope_attention_factor(p), g);
  p.mscale = 0.7;  // without mscale_all_dim, mscale changes nothing
  EXPECT_DOUBLE_EQ(cpu::rope_attention_factor(p), g);
  p.mscale_all_dim = 0.7;  // equal: the ratio is 1 (Ministral 3, DeepSeek V3)
  EXPECT_DOUBLE_EQ(cpu::rope_attention_factor(p), 1.0);
  p.mscale_all_dim = 0.2;
  EXPECT_DOUBLE_EQ(cpu::rope_attention_factor(p),
                   (0.07 * std::log(8.0) + 1.0) / (0.02 * std::log(8.0) + 1.0));
  p.attention_factor = 1.25;  // given: taken as it is
  EXPECT_DOUBLE_EQ(cpu::rope_attention_factor(p), 1.25);
  p.attention_factor = 0.0;
  p.factor = 0.5;  // s <= 1: g = 1
  EXPECT_DOUBLE_EQ(cpu::rope_attention_factor(p), 1.0);
  p.scaling = RopeScalingType::kNone;
  p.attention_factor = 1.25;  // only yarn has one
  EXPECT_DOUBLE_EQ(cpu::rope_attention_factor(p), 1.0);
}

TEST(RopeTables, YarnWithoutTruncationAndPartialRotary) {
  RopeParams p = yarn_params();  // Dh 64, theta 1e4, s 8, L 4096, betas 32 / 1
  p.rotary_dim = 32;
  p.truncate = false;
  // dim(r) over Dr = 32: 32 ln(4096 / (2 pi r)) / (2 ln 1e4): low = dim(32) = 5.236, high =
  // dim(1) = 11.26, not rounded.
  const double dr = 32, ln_t = std::log(1e4);
  const double low = dr * std::log(4096 / (2 * std::numbers::pi * 32)) / (2 * ln_t);
  const double high = dr * std::log(4096 / (2 * std::numbers::pi * 1)) / (2 * ln_t);
  ASSERT_NEAR(low, 5.236, 1e-3);
  ASSERT_NEAR(high, 11.26, 1e-2);
  const std::vector<double> got = cpu::rope_inv_freq(p);
  ASSERT_EQ(got.size(), 16u);
  for (size_t i = 0; i < got.size(); ++i) {
    const double f = std::pow(1e4, -2.0 * static_cast<double>(i) / dr);
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    EXPECT_NEAR(got[i], f * (1 - ramp) + f / 8 * ramp, 1e-15 * f) << i;
  }
  // The tables are [S, Dr/2]; a table of the full width is refused.
  Arena a(Device::kCpu, 1 << 16, "test");
  Tensor cos = a.alloc(DType::kF64, {4, 16}), sin = a.alloc(DType::kF64, {4, 16});
  rope_tables(kCpu, cos, sin, p);
  EXPECT_NEAR(cos.ptr<double>()[16 + 3], cpu::rope_attention_factor(p) * std::cos(got[3]), 1e-15);
}

TEST(RopeTables, PositionScaleIsLlama4) {
  Arena a(Device::kCpu, 1 << 12, "test");
  Tensor g = a.alloc(DType::kF64, {40});
  rope_position_scale(kCpu, g, 0.1, 16);
  for (int64_t p = 0; p < 40; ++p) {
    const double want = 1.0 + 0.1 * std::log(1.0 + std::floor(static_cast<double>(p) / 16.0));
    EXPECT_DOUBLE_EQ(g.ptr<double>()[p], want) << p;
  }
  EXPECT_DOUBLE_EQ(g.ptr<double>()[15], 1.0);
  EXPECT_DOUBLE_EQ(g.ptr<double>()[16], 1.0 + 0.1 * std::log(2.0));
  EXPECT_DOUBLE_EQ(g.ptr<double>()[39], 1.0 + 0.1 * std::log(3.0));
}

TEST(Rope, InterleavedAndPartialByHand) {
  Arena a(Device::kCpu, 1 << 16, "test");
  RopeParams p;
  p.head_dim = 6;
  p.rotary_dim = 4;  // inv_freq = [1, 1e-2]; dims 4 and 5 pass through
  Tensor cos = a.alloc(DType::kF64, {3, 2}), sin = a.alloc(DType::kF64, {3, 2});
  rope_tables(kCpu, cos, sin, p);
  Tensor x = a.alloc(DType::kF64, {1, 1, 6}), y = a.alloc(DType::kF64, {1, 1, 6});
  Tensor pos = a.alloc(DType::kI32, {1});
  const V xv = {1, 2, 3, 4, 5, 6};
  for (size_t i = 0; i < xv.size(); ++i) x.ptr<double>()[i] = xv[i];
  pos.ptr<int32_t>()[0] = 2;
  const double c0 = std::cos(2.0), s0 = std::sin(2.0), c1 = std::cos(0.02), s1 = std::sin(0.02);
  // rotate-half within Dr = 4: pairs (0, 2) by 2 rad, (1, 3) by 0.02 rad
  rope_fwd(kCpu, y, x, pos, cos, sin);
  EXPECT_TRUE(test::all_close(
      test::to_doubles(y),
      V{1 * c0 - 3 * s0, 2 * c1 - 4 * s1, 3 * c0 + 1 * s0, 4 * c1 + 2 * s1, 5, 6}, 1e-15));
  // interleaved: pairs (0, 1) by 2 rad, (2, 3) by 0.02 rad; with a scale g = 3 on everything
  Tensor g = a.alloc(DType::kF64, {3});
  for (int i = 0; i < 3; ++i) g.ptr<double>()[i] = 3.0;
  rope_fwd(kCpu, y, x, pos, cos, sin, {.layout = RopeLayout::kInterleaved, .scale = g});
  EXPECT_TRUE(test::all_close(test::to_doubles(y),
                              V{3 * (1 * c0 - 2 * s0), 3 * (2 * c0 + 1 * s0), 3 * (3 * c1 - 4 * s1),
                                3 * (4 * c1 + 3 * s1), 15, 18},
                              1e-14));
}

TEST(Rope, InterleavedIsRotateHalfOnPermutedDims) {
  const int64_t n_tokens = 9, heads = 2, dh = 16, s_max = 32;
  Arena a(Device::kCpu, 1 << 18, "test");
  const RopeParams p = [] {
    RopeParams q = yarn_params();
    q.head_dim = 16;
    q.original_max_seq_len = 8;
    return q;
  }();
  Tensor cos = a.alloc(DType::kF64, {s_max, dh / 2}), sin = a.alloc(DType::kF64, {s_max, dh / 2});
  rope_tables(kCpu, cos, sin, p);
  Tensor x = a.alloc(DType::kF64, {n_tokens, heads, dh}), xp = a.alloc(DType::kF64, x.shape);
  Tensor y = a.alloc(DType::kF64, x.shape), yp = a.alloc(DType::kF64, x.shape);
  Tensor pos = a.alloc(DType::kI32, {n_tokens});
  test::fill_normal(x, 11);
  test::fill_uniform(pos, 12, 0, static_cast<double>(s_max));
  // xp: each head's dims reordered 2i -> i, 2i + 1 -> i + Dh/2 (Mistral's rows -> transformers').
  const double* xs = x.ptr<double>();
  double* xps = xp.ptr<double>();
  for (int64_t r = 0; r < n_tokens * heads; ++r) {
    for (int64_t i = 0; i < dh / 2; ++i) {
      xps[r * dh + i] = xs[r * dh + 2 * i];
      xps[r * dh + i + dh / 2] = xs[r * dh + 2 * i + 1];
    }
  }
  rope_fwd(kCpu, y, x, pos, cos, sin, {.layout = RopeLayout::kInterleaved});
  rope_fwd(kCpu, yp, xp, pos, cos, sin);
  const double* ys = y.ptr<double>();
  const double* yps = yp.ptr<double>();
  for (int64_t r = 0; r < n_tokens * heads; ++r) {
    for (int64_t i = 0; i < dh / 2; ++i) {
      ASSERT_NEAR(yps[r * dh + i], ys[r * dh + 2 * i], 1e-15);
      ASSERT_NEAR(yps[r * dh + i + dh / 2], ys[r * dh + 2 * i + 1], 1e-15);
    }
  }
}

TEST(Rope, BackwardInvertsForwardWithoutScaling) {
  const int64_t n_tokens = 11, heads = 2, dh = 16, s_max = 64;
  Arena a(Device::kCpu, 1 << 18, "test");
  RopeParams p;
  p.head_dim = dh;
  Tensor cos = a.alloc(DType::kF64, {s_max, dh / 2}), sin = a.alloc(DType::kF64, {s_max, dh / 2});
  rope_tables(kCpu, cos, sin, p);
  Tensor x = a.alloc(DType::kF64, {n_tokens, heads, dh}), y = a.alloc(DType::kF64, x.shape);
  Tensor pos = a.alloc(DType::kI32, {n_tokens});
  test::fill_normal(x, 5);
  test::fill_uniform(pos, 6, 0, static_cast<double>(s_max));
  rope_fwd(kCpu, y, x, pos, cos, sin);
  rope_bwd(kCpu, y, y, pos, cos, sin);  // R^T R x = x when m = 1
  EXPECT_TRUE(test::all_close(y, x, 1e-14));
}

TEST(Rope, F32MatchesF64AndInPlace) {
  const RopeParams p = yarn_params();
  const int64_t n_tokens = 13, heads = 5, dh = p.head_dim, s_max = 8192;
  Arena a(Device::kCpu, 1 << 24, "test");
  Tensor pos = a.alloc(DType::kI32, {n_tokens});
  test::fill_uniform(pos, 7, 0, static_cast<double>(s_max));
  const DType types[2] = {DType::kF32, DType::kF64};
  Tensor y[2], dx[2];
  for (int k = 0; k < 2; ++k) {
    Tensor cos = a.alloc(types[k], {s_max, dh / 2}), sin = a.alloc(types[k], {s_max, dh / 2});
    rope_tables(kCpu, cos, sin, p);
    Tensor x = a.alloc(types[k], {n_tokens, heads, dh});
    y[k] = a.alloc(types[k], x.shape);
    dx[k] = a.alloc(types[k], x.shape);
    test::fill_normal(x, 8);
    test::fill_normal(dx[k], 9);
    rope_fwd(kCpu, y[k], x, pos, cos, sin);
    rope_fwd(kCpu, x, x, pos, cos, sin);  // in place gives the same
    EXPECT_TRUE(test::all_close(x, y[k], 0.0));
    rope_bwd(kCpu, dx[k], dx[k], pos, cos, sin);
  }
  EXPECT_TRUE(test::all_close(y[0], y[1], 1e-6));
  EXPECT_TRUE(test::all_close(dx[0], dx[1], 1e-6));
}

TEST(RopeDeathTest, PositionOutsideTablesIsFatal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Arena a(Device::kCpu, 1 << 14, "test");
  RopeParams p;
  p.head_dim = 8;
  Tensor cos = a.alloc(DType::kF32, {16, 4}), sin = a.alloc(DType::kF32, {16, 4});
  rope_tables(kCpu, cos, sin, p);
  Tensor x = a.alloc(DType::kF32, {3, 2, 8}), pos = a.alloc(DType::kI32, {3});
  pos.ptr<int32_t>()[2] = 16;
  EXPECT_EXIT(rope_fwd(kCpu, x, x, pos, cos, sin), ::testing::ExitedWithCode(1),
              "position 16 of token 2 outside the tables \\[0, 16\\)");
  p.head_dim = 6;
  EXPECT_EXIT(rope_tables(kCpu, cos, sin, p), ::testing::ExitedWithCode(1),
              "rotary_dim 6 \\(head_dim 6\\) must be even, at most head_dim and twice");
}

}  // namespace
}  // namespace tmt
