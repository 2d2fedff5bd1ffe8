// Expert GEMMs: each group against its own weight by hand, an expert with no rows, fp64 finite
// differences for dx and dweight (accumulated onto what was there).
#include "kernels/grouped_linear.h"

#include <gtest/gtest.h>

#include "kernels/base/arena.h"
#include "tests/support/compare.h"
#include "tests/support/grad_check.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};

TEST(GroupedLinear, EachGroupUsesItsExpert) {
  Arena a(Device::kCpu, 1 << 16, "t");
  const std::vector<int64_t> counts = {2, 0, 1};
  Tensor x = a.alloc(DType::kF64, {3, 2}), w = a.alloc(DType::kF64, {3, 1, 2}),
         y = a.alloc(DType::kF64, {3, 1});
  const double xs[] = {1, 2, 3, 4, 5, 6}, ws[] = {1, 10, 100, 1000, -1, 1};
  std::copy(xs, xs + 6, x.ptr<double>());
  std::copy(ws, ws + 6, w.ptr<double>());
  grouped_linear_fwd(kCpu, y, x, w, counts);
  EXPECT_DOUBLE_EQ(y.ptr<double>()[0], 1 + 20);  // expert 0
  EXPECT_DOUBLE_EQ(y.ptr<double>()[1], 3 + 40);  // expert 0
  EXPECT_DOUBLE_EQ(y.ptr<double>()[2], -5 + 6);  // expert 2 (expert 1 has no rows)
}

TEST(GroupedLinear, GradientsMatchFiniteDifferences) {
  Arena a(Device::kCpu, 1 << 20, "t");
  const std::vector<int64_t> counts = {3, 0, 5, 1};
  const int64_t rows = 9, n = 5, k = 7;
  Tensor x = a.alloc(DType::kF64, {rows, k}), w = a.alloc(DType::kF64, {4, n, k});
  Tensor y = a.alloc(DType::kF64, {rows, n}), dy = a.alloc(DType::kF64, {rows, n});
  Tensor dx = a.alloc(DType::kF64, {rows, k}), dw = a.alloc(DType::kF64, {4, n, k});
  test::fill_normal(x, 1);
  test::fill_normal(w, 2);
  test::fill_normal(dy, 3);
  test::fill_uniform(dx, 4);  // junk: must be overwritten
  test::fill_uniform(dw, 5);  // earlier gradient: must be added to
  const std::vector<double> dw_before = test::to_doubles(dw);
  auto loss = [&] {
    grouped_linear_fwd(kCpu, y, x, w, counts);
    return test::dot(y, dy);
  };
  grouped_linear_bwd(kCpu, dx, dw, dy, x, w, counts);
  test::expect_close(test::to_doubles(dx), test::numeric_gradient(loss, x), 1e-8, "dx");
  std::vector<double> added = test::to_doubles(dw);
  for (size_t i = 0; i < added.size(); ++i) added[i] -= dw_before[i];
  const std::vector<double> num_dw = test::numeric_gradient(loss, w);
  test::expect_close(added, num_dw, 1e-8, "dweight (accumulated)");
  for (int64_t i = 0; i < n * k; ++i)
    EXPECT_EQ(num_dw[static_cast<size_t>(n * k + i)], 0.0);  // expert 1: no rows
}

}  // namespace
}  // namespace tmt
