// rope: tables without scaling against the closed form; yarn with factor 1 equal to none; yarn at
// the two ends of its ramp equal to pure extrapolation / interpolation (and the attention factor
// folded in); a hand-rotated vector; fp64 finite differences of the backward with yarn tables (m !=
// 1, so R^T differs from R^-1); R^T R = 1 without scaling; f32 vs f64; in-place.
#include "kernels/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "kernels/base/arena.h"
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
  p.mscale = 0.9;
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
  const double m = 0.9 * (0.1 * std::log(8.0) + 1.0);
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

TEST(Rope, GradientCheckF64WithYarn) {
  RopeParams p = yarn_params();
  p.head_dim = 12;
  p.original_max_seq_len = 16;
  p.beta_fast = 4.0;  // ramp inside the 6 pairs
  p.beta_slow = 0.5;
  const int64_t n_tokens = 7, heads = 3, dh = p.head_dim, s_max = 40;
  Arena a(Device::kCpu, 1 << 18, "test");
  Tensor cos = a.alloc(DType::kF64, {s_max, dh / 2}), sin = a.alloc(DType::kF64, {s_max, dh / 2});
  rope_tables(kCpu, cos, sin, p);
  ASSERT_GT(std::fabs(cos.ptr<double>()[0] - 1.0), 0.05);  // m != 1: R is not orthogonal
  Tensor x = a.alloc(DType::kF64, {n_tokens, heads, dh}), y = a.alloc(DType::kF64, x.shape);
  Tensor dy = a.alloc(DType::kF64, x.shape), dx = a.alloc(DType::kF64, x.shape);
  Tensor pos = a.alloc(DType::kI32, {n_tokens});
  test::fill_normal(x, 1);
  test::fill_normal(dy, 2);
  test::fill_normal(dx, 3);
  test::fill_uniform(pos, 4, 0, static_cast<double>(s_max));
  auto loss = [&] {
    rope_fwd(kCpu, y, x, pos, cos, sin);
    return test::dot(dy, y);
  };
  const V numeric = test::numeric_gradient(loss, x);
  rope_bwd(kCpu, dx, dy, pos, cos, sin);
  test::expect_close(test::to_doubles(dx), numeric, 1e-8,
                     "dx vs finite differences (yarn, m != 1)");

  // In place: dx over dy.
  rope_bwd(kCpu, dy, dy, pos, cos, sin);
  EXPECT_TRUE(test::all_close(dy, dx, 0.0));
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
              "head_dim 6 must be even and twice the tables' width");
}

}  // namespace
}  // namespace tmt
