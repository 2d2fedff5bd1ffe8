// rmsnorm: a hand-computed row; fp64 finite differences of dx and dweight (accumulated); f32 vs
// f64; dx computed in place over dy.
#include "kernels/rmsnorm.h"

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

TEST(RmsNorm, ByHand) {
  Arena a(Device::kCpu, 1 << 16, "test");
  // Row 0: x = [3, 4], mean square 12.5, r = 1/sqrt(12.5). Row 1: x = [1, -1], r = 1 (eps = 0).
  Tensor x = a.alloc(DType::kF64, {2, 2}), y = a.alloc(DType::kF64, {2, 2});
  Tensor w = a.alloc(DType::kF64, {2}), rstd = a.alloc(DType::kF64, {2});
  test::set_values(x, {3, 4, 1, -1});
  test::set_values(w, {1, 2});
  rmsnorm_fwd(kCpu, y, rstd, x, w, 0.0);
  const double r = 1.0 / std::sqrt(12.5);
  EXPECT_TRUE(test::all_close(test::to_doubles(rstd), std::vector<double>{r, 1.0}, 1e-15));
  EXPECT_TRUE(
      test::all_close(test::to_doubles(y), std::vector<double>{3 * r, 8 * r, 1, -2}, 1e-15));

  // Row 0, dy = [1, 0], w = 1: a = 3, dx = [r - r^3 * 3 * 3/2, -r^3 * 4 * 3/2]
  //   = r * [0.64, -0.48] since r^2 = 0.08.
  // Row 1, dy = [0, 1], r = 1: a = -1, dx = dy - a/2 * x = [0.5, 0.5].
  test::set_values(w, {1, 1});
  Tensor dy = a.alloc(DType::kF64, {2, 2}), dx = a.alloc(DType::kF64, {2, 2});
  Tensor dw = a.alloc(DType::kF64, {2});
  test::set_values(dy, {1, 0, 0, 1});
  test::set_values(dw, {10, 20});
  rmsnorm_bwd(kCpu, dx, dw, dy, x, w, rstd);
  EXPECT_TRUE(test::all_close(test::to_doubles(dx),
                              std::vector<double>{0.64 * r, -0.48 * r, 0.5, 0.5}, 1e-14));
  // dw += [1 * 3 * r + 0, 0 + 1 * (-1) * 1]
  EXPECT_TRUE(test::all_close(test::to_doubles(dw), std::vector<double>{10 + 3 * r, 19}, 1e-15));
}

TEST(RmsNorm, GradientCheckF64) {
  const int64_t n_tokens = 7, d = 12;
  const double eps = 1e-5;
  Arena a(Device::kCpu, 1 << 16, "test");
  Tensor x = a.alloc(DType::kF64, {n_tokens, d}), y = a.alloc(DType::kF64, {n_tokens, d});
  Tensor w = a.alloc(DType::kF64, {d}), rstd = a.alloc(DType::kF64, {n_tokens});
  Tensor dy = a.alloc(DType::kF64, {n_tokens, d}), dx = a.alloc(DType::kF64, {n_tokens, d});
  Tensor dw = a.alloc(DType::kF64, {d});
  test::fill_normal(x, 1);
  test::fill_uniform(w, 2, 0.5, 1.5);
  test::fill_normal(dy, 3);
  test::fill_normal(dw, 4);
  test::fill_normal(dx, 5);  // written, not accumulated: garbage must not survive
  const std::vector<double> dw_before = test::to_doubles(dw);

  auto loss = [&] {
    rmsnorm_fwd(kCpu, y, rstd, x, w, eps);
    return test::dot(dy, y);
  };
  const std::vector<double> num_dx = test::numeric_gradient(loss, x);
  const std::vector<double> num_dw = test::numeric_gradient(loss, w);
  loss();  // rstd for the unperturbed x
  rmsnorm_bwd(kCpu, dx, dw, dy, x, w, rstd);
  std::vector<double> added = test::to_doubles(dw);
  for (size_t i = 0; i < added.size(); ++i) added[i] -= dw_before[i];
  test::expect_close(test::to_doubles(dx), num_dx, 1e-7, "dx vs finite differences");
  test::expect_close(added, num_dw, 1e-7, "dweight vs finite differences");
}

TEST(RmsNorm, F32MatchesF64AndInPlace) {
  const int64_t n_tokens = 9, d = 33;
  Arena a(Device::kCpu, 1 << 18, "test");
  const DType types[2] = {DType::kF32, DType::kF64};
  Tensor y[2], dx[2], dw[2];
  for (int k = 0; k < 2; ++k) {
    const DType t = types[k];
    Tensor x = a.alloc(t, {n_tokens, d}), w = a.alloc(t, {d}), dy = a.alloc(t, {n_tokens, d});
    Tensor rstd = a.alloc(DType::kF32, {n_tokens});  // f32 statistics for both
    y[k] = a.alloc(t, {n_tokens, d});
    dw[k] = a.alloc(t, {d});
    test::fill_normal(x, 7, 2.0);
    test::fill_uniform(w, 8, -1.5, 1.5);
    test::fill_normal(dy, 9);
    test::fill_normal(dw[k], 10);
    rmsnorm_fwd(kCpu, y[k], rstd, x, w, 1e-6);
    rmsnorm_bwd(kCpu, dy, dw[k], dy, x, w, rstd);  // dx written over dy
    dx[k] = dy;
  }
  EXPECT_TRUE(test::all_close(y[0], y[1], 1e-6));
  EXPECT_TRUE(test::all_close(dx[0], dx[1], 1e-6));
  EXPECT_TRUE(test::all_close(dw[0], dw[1], 1e-6));

  // The in-place result equals the out-of-place one.
  Tensor x = a.alloc(DType::kF64, {n_tokens, d}), w = a.alloc(DType::kF64, {d});
  Tensor dy = a.alloc(DType::kF64, {n_tokens, d}), dx2 = a.alloc(DType::kF64, {n_tokens, d});
  Tensor rstd = a.alloc(DType::kF32, {n_tokens}), dw2 = a.alloc(DType::kF64, {d});
  test::fill_normal(x, 7, 2.0);
  test::fill_uniform(w, 8, -1.5, 1.5);
  test::fill_normal(dy, 9);
  test::fill_normal(dw2, 10);
  rmsnorm_fwd(kCpu, y[1], rstd, x, w, 1e-6);
  rmsnorm_bwd(kCpu, dx2, dw2, dy, x, w, rstd);
  EXPECT_TRUE(test::all_close(dx2, dx[1], 0.0));
  EXPECT_TRUE(test::all_close(dw2, dw[1], 0.0));
}

}  // namespace
}  // namespace tmt
