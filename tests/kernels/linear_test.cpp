// linear: a hand-computed 2x2 @ (3x2)^T product with its accumulate mode and backward; fp64 finite
// differences of dx and dweight; write vs accumulate of dx, skipped outputs; f32 vs f64.
#include "kernels/linear.h"

#include <gtest/gtest.h>

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

TEST(Linear, ByHand) {
  Arena a(Device::kCpu, 1 << 16, "test");
  Tensor x = a.alloc(DType::kF64, {2, 2}), w = a.alloc(DType::kF64, {3, 2});
  Tensor y = a.alloc(DType::kF64, {2, 3});
  test::set_values(x, {1, 2, 3, 4});
  test::set_values(w, {1, 0, 0, 1, 1, 1});
  test::set_values(y, {9, 9, 9, 9, 9, 9});
  linear_fwd(kCpu, y, x, w);
  EXPECT_TRUE(test::all_close(test::to_doubles(y), V{1, 2, 3, 3, 4, 7}, 0.0));
  linear_fwd(kCpu, y, x, w, /*accumulate=*/true);
  EXPECT_TRUE(test::all_close(test::to_doubles(y), V{2, 4, 6, 6, 8, 14}, 0.0));

  Tensor dy = a.alloc(DType::kF64, {2, 3}), dx = a.alloc(DType::kF64, {2, 2});
  Tensor dw = a.alloc(DType::kF64, {3, 2});
  test::set_values(dy, {1, 0, 0, 0, 0, 1});
  test::set_values(dx, {5, 5, 5, 5});
  test::set_values(dw, {1, 1, 1, 1, 1, 1});
  linear_bwd(kCpu, dx, dw, dy, x, w);
  EXPECT_TRUE(test::all_close(test::to_doubles(dx), V{1, 0, 1, 1}, 0.0));
  EXPECT_TRUE(test::all_close(test::to_doubles(dw), V{2, 3, 1, 1, 4, 5}, 0.0));
  linear_bwd(kCpu, dx, Tensor{}, dy, x, w, /*accumulate_dx=*/true);  // dweight skipped
  EXPECT_TRUE(test::all_close(test::to_doubles(dx), V{2, 0, 2, 2}, 0.0));
  EXPECT_TRUE(test::all_close(test::to_doubles(dw), V{2, 3, 1, 1, 4, 5}, 0.0));
  linear_bwd(kCpu, Tensor{}, dw, dy, x, w);  // dx skipped
  EXPECT_TRUE(test::all_close(test::to_doubles(dx), V{2, 0, 2, 2}, 0.0));
  EXPECT_TRUE(test::all_close(test::to_doubles(dw), V{3, 5, 1, 1, 7, 9}, 0.0));
}

TEST(Linear, EmptyInnerDimensionWritesZeros) {
  Arena a(Device::kCpu, 1 << 12, "test");
  Tensor x = a.alloc(DType::kF32, {3, 0}), w = a.alloc(DType::kF32, {2, 0});
  Tensor y = a.alloc(DType::kF32, {3, 2});
  test::fill_uniform(y, 1, 1.0, 2.0);
  linear_fwd(kCpu, y, x, w);
  for (double v : test::to_doubles(y)) EXPECT_EQ(v, 0.0);
}

TEST(Linear, GradientCheckF64) {
  const int64_t n_tokens = 7, k = 12, n = 5;
  Arena a(Device::kCpu, 1 << 16, "test");
  Tensor x = a.alloc(DType::kF64, {n_tokens, k}), w = a.alloc(DType::kF64, {n, k});
  Tensor y = a.alloc(DType::kF64, {n_tokens, n}), dy = a.alloc(DType::kF64, {n_tokens, n});
  Tensor dx = a.alloc(DType::kF64, {n_tokens, k}), dw = a.alloc(DType::kF64, {n, k});
  test::fill_normal(x, 1);
  test::fill_normal(w, 2);
  test::fill_normal(dy, 3);
  test::fill_normal(dx, 4);
  test::fill_normal(dw, 5);
  const V dx_before = test::to_doubles(dx), dw_before = test::to_doubles(dw);
  auto loss = [&] {
    linear_fwd(kCpu, y, x, w);
    return test::dot(dy, y);
  };
  const V num_dx = test::numeric_gradient(loss, x);
  const V num_dw = test::numeric_gradient(loss, w);

  linear_bwd(kCpu, dx, dw, dy, x, w, /*accumulate_dx=*/true);
  V dx_added = test::to_doubles(dx), dw_added = test::to_doubles(dw);
  for (size_t i = 0; i < dx_added.size(); ++i) dx_added[i] -= dx_before[i];
  for (size_t i = 0; i < dw_added.size(); ++i) dw_added[i] -= dw_before[i];
  test::expect_close(dx_added, num_dx, 1e-8, "dx (accumulated) vs finite differences");
  test::expect_close(dw_added, num_dw, 1e-8, "dweight vs finite differences");

  linear_bwd(kCpu, dx, Tensor{}, dy, x, w);  // written this time
  test::expect_close(test::to_doubles(dx), num_dx, 1e-8, "dx (written) vs finite differences");
}

TEST(Linear, F32MatchesF64) {
  const int64_t n_tokens = 37, k = 29, n = 19;
  Arena a(Device::kCpu, 1 << 18, "test");
  const DType types[2] = {DType::kF32, DType::kF64};
  Tensor y[2], dx[2], dw[2];
  for (int i = 0; i < 2; ++i) {
    const DType t = types[i];
    Tensor x = a.alloc(t, {n_tokens, k}), w = a.alloc(t, {n, k}), dy = a.alloc(t, {n_tokens, n});
    y[i] = a.alloc(t, {n_tokens, n});
    dx[i] = a.alloc(t, {n_tokens, k});
    dw[i] = a.alloc(t, {n, k});
    test::fill_normal(x, 11);
    test::fill_normal(w, 12);
    test::fill_normal(dy, 13);
    test::fill_normal(y[i], 14);
    test::fill_normal(dw[i], 15);
    linear_fwd(kCpu, y[i], x, w, /*accumulate=*/true);
    linear_bwd(kCpu, dx[i], dw[i], dy, x, w);
  }
  EXPECT_TRUE(test::all_close(y[0], y[1], 1e-6));
  EXPECT_TRUE(test::all_close(dx[0], dx[1], 1e-6));
  EXPECT_TRUE(test::all_close(dw[0], dw[1], 1e-6));
}

TEST(LinearDeathTest, ShapeMismatchIsFatal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Arena a(Device::kCpu, 1 << 12, "test");
  Tensor x = a.alloc(DType::kF32, {3, 4}), w = a.alloc(DType::kF32, {5, 4});
  EXPECT_EXIT(linear_fwd(kCpu, a.alloc(DType::kF32, {3, 4}), x, w), ::testing::ExitedWithCode(1),
              "linear_fwd: .* are not \\[T, K\\], \\[N, K\\], \\[T, N\\]");
  EXPECT_EXIT(
      linear_bwd(kCpu, a.alloc(DType::kF32, {3, 5}), Tensor{}, a.alloc(DType::kF32, {3, 5}), x, w),
      ::testing::ExitedWithCode(1), "linear_bwd: dx .* does not match x");
}

}  // namespace
}  // namespace tmt
