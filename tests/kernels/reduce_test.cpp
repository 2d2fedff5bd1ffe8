// reduce: sum_squares, scale and add on hand-computed values; sum_squares on a large ragged tensor
// against a compensated (Kahan) sum and independent of the thread count; f32 vs f64.
#include "kernels/reduce.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels/base/arena.h"
#include "tests/support/compare.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};
using V = std::vector<double>;

TEST(Reduce, ByHand) {
  Arena a(Device::kCpu, 1 << 12, "test");
  Tensor x = a.alloc(DType::kF64, {2, 2}), y = a.alloc(DType::kF32, {3});
  test::set_values(x, {1, -2, 3, 0.5});
  EXPECT_EQ(sum_squares(kCpu, x), 14.25);
  test::set_values(y, {3, 4, 12});
  EXPECT_EQ(sum_squares(kCpu, y), 169.0);
  EXPECT_EQ(sum_squares(kCpu, a.alloc(DType::kF32, {0})), 0.0);

  scale(kCpu, x, -0.5);
  EXPECT_TRUE(test::all_close(test::to_doubles(x), V{-0.5, 1, -1.5, -0.25}, 0.0));
  Tensor z = a.alloc(DType::kF64, {4});
  test::set_values(z, {10, 20, 30, 40});
  add(kCpu, z, x);
  EXPECT_TRUE(test::all_close(test::to_doubles(z), V{9.5, 21, 28.5, 39.75}, 0.0));
  add(kCpu, z, x.view({4}), 2.0);
  EXPECT_TRUE(test::all_close(test::to_doubles(z), V{8.5, 23, 25.5, 39.25}, 0.0));
}

TEST(Reduce, SumSquaresLargeAndDeterministic) {
  const int64_t n = 1'000'003;
  Arena a(Device::kCpu, static_cast<size_t>(n) * 8 + 4096, "test");
  Tensor x = a.alloc(DType::kF64, {n});
  test::fill_normal(x, 1, 3.0);
  double sum = 0.0, carry = 0.0;  // Kahan
  for (int64_t i = 0; i < n; ++i) {
    const double term = x.ptr<double>()[i] * x.ptr<double>()[i] - carry;
    const double next = sum + term;
    carry = (next - sum) - term;
    sum = next;
  }
  const double got = sum_squares(kCpu, x);
  EXPECT_NEAR(got, sum, 1e-12 * sum);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one_thread = sum_squares(kCpu, x);
  omp_set_num_threads(3);
  const double three_threads = sum_squares(kCpu, x);
  omp_set_num_threads(threads);
  EXPECT_EQ(one_thread, got);
  EXPECT_EQ(three_threads, got);
}

TEST(Reduce, F32MatchesF64) {
  const int64_t n = 4099;
  Arena a(Device::kCpu, 1 << 18, "test");
  const DType types[2] = {DType::kF32, DType::kF64};
  double ss[2];
  Tensor y[2];
  for (int k = 0; k < 2; ++k) {
    Tensor x = a.alloc(types[k], {n});
    y[k] = a.alloc(types[k], {n});
    test::fill_normal(x, 2);
    test::fill_normal(y[k], 3);
    ss[k] = sum_squares(kCpu, x);
    scale(kCpu, x, 0.3);
    add(kCpu, y[k], x, -1.5);
  }
  EXPECT_NEAR(ss[0], ss[1], 1e-6 * ss[1]);
  EXPECT_TRUE(test::all_close(y[0], y[1], 1e-6));
}

}  // namespace
}  // namespace tmt
