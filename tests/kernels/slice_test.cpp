// slice: copy_columns and sum_columns on hand-computed values; on ragged random shapes against the
// index formula of kernels/slice.h, written and accumulated; and sum_columns as the transpose of
// copy_columns (<copy(x), y> = <x, sum(y)>), which the backward of a broadcast relies on.
#include "kernels/slice.h"

#include <gtest/gtest.h>

#include <vector>

#include "kernels/base/arena.h"
#include "tests/support/compare.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};
using V = std::vector<double>;

TEST(Slice, ByHand) {
  Arena a(Device::kCpu, 1 << 12, "test");
  const Tensor src = a.alloc(DType::kF64, {2, 3}), dst = a.alloc(DType::kF64, {4, 4});
  test::set_values(src, {1, 2, 3, 4, 5, 6});
  test::set_values(dst, V(16, -1.0));
  // columns 1..2 of src, each row twice, into columns 2..3 of dst
  copy_columns(kCpu, dst, src, {.dst_col = 2, .src_col = 1, .width = 2}, /*repeat=*/2);
  EXPECT_TRUE(test::all_close(test::to_doubles(dst),
                              V{-1, -1, 2, 3, -1, -1, 2, 3, -1, -1, 5, 6, -1, -1, 5, 6}, 0.0));
  copy_columns(kCpu, dst, src, {.dst_col = 0, .src_col = 0, .width = 1}, 2, /*accumulate=*/true);
  EXPECT_TRUE(test::all_close(test::to_doubles(dst),
                              V{0, -1, 2, 3, 0, -1, 2, 3, 3, -1, 5, 6, 3, -1, 5, 6}, 0.0));
  // rows summed in pairs: back to [2, 3]
  const Tensor back = a.alloc(DType::kF64, {2, 3});
  test::set_values(back, V(6, 7.0));
  sum_columns(kCpu, back, dst, {.dst_col = 1, .src_col = 2, .width = 2}, /*group=*/2);
  EXPECT_TRUE(test::all_close(test::to_doubles(back), V{7, 4, 6, 7, 10, 12}, 0.0));
  sum_columns(kCpu, back, dst, {.dst_col = 0, .src_col = 0, .width = 1}, 2, true);
  EXPECT_TRUE(test::all_close(test::to_doubles(back), V{7, 4, 6, 13, 10, 12}, 0.0));
}

// The formula of kernels/slice.h, written out on doubles.
V reference(const V& dst, int64_t a, const V& src, int64_t b, const ColumnBlock& blk,
            int64_t repeat, int64_t group, bool accumulate) {
  V out = dst;
  const auto rows = static_cast<int64_t>(dst.size()) / a;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < blk.width; ++j) {
      double s = 0;
      for (int64_t i = 0; i < group; ++i)
        s += src[static_cast<size_t>(((r / repeat) * group + i) * b + blk.src_col + j)];
      double& o = out[static_cast<size_t>(r * a + blk.dst_col + j)];
      o = accumulate ? o + s : s;
    }
  }
  return out;
}

TEST(Slice, RaggedRandomAgainstFormula) {
  Arena a(Device::kCpu, 1 << 16, "test");
  uint64_t seed = 11;
  for (DType dt : {DType::kF32, DType::kF64}) {
    for (bool acc : {false, true}) {
      // [21, 13] <- [7, 9] repeated 3 times; [7, 13] <- the sum of groups of 3 rows of [21, 9]
      const ColumnBlock blk{.dst_col = 5, .src_col = 2, .width = 7};
      const Tensor dst = a.alloc(dt, {21, 13}), src = a.alloc(dt, {7, 9});
      test::fill_uniform(dst, ++seed);
      test::fill_uniform(src, ++seed);
      const V want = reference(test::to_doubles(dst), 13, test::to_doubles(src), 9, blk, 3, 1, acc);
      copy_columns(kCpu, dst, src, blk, 3, acc);
      EXPECT_TRUE(test::all_close(test::to_doubles(dst), want, 1e-6));

      const Tensor sdst = a.alloc(dt, {7, 13}), ssrc = a.alloc(dt, {21, 9});
      test::fill_uniform(sdst, ++seed);
      test::fill_uniform(ssrc, ++seed);
      const V swant =
          reference(test::to_doubles(sdst), 13, test::to_doubles(ssrc), 9, blk, 1, 3, acc);
      sum_columns(kCpu, sdst, ssrc, blk, 3, acc);
      EXPECT_TRUE(test::all_close(test::to_doubles(sdst), swant, 1e-6));
    }
  }
}

TEST(Slice, SumIsTheTransposeOfTheBroadcast) {
  Arena a(Device::kCpu, 1 << 14, "test");
  const ColumnBlock blk{.dst_col = 3, .src_col = 1, .width = 4};
  const Tensor x = a.alloc(DType::kF64, {5, 6}), y = a.alloc(DType::kF64, {20, 8});
  const Tensor cx = a.alloc(DType::kF64, {20, 8}), sy = a.alloc(DType::kF64, {5, 6});
  test::fill_uniform(x, 1);
  test::fill_uniform(y, 2);
  test::set_values(cx, V(160, 0.0));
  test::set_values(sy, V(30, 0.0));
  // cx = broadcast of x's block; sy = the transposed map of y's block
  copy_columns(kCpu, cx, x, blk, 4);
  sum_columns(kCpu, sy, y, {.dst_col = blk.src_col, .src_col = blk.dst_col, .width = 4}, 4);
  const V vx = test::to_doubles(x), vy = test::to_doubles(y);
  const V vcx = test::to_doubles(cx), vsy = test::to_doubles(sy);
  double lhs = 0, rhs = 0;
  for (size_t i = 0; i < vy.size(); ++i) lhs += vcx[i] * vy[i];
  for (size_t i = 0; i < vx.size(); ++i) rhs += vx[i] * vsy[i];
  EXPECT_NEAR(lhs, rhs, 1e-12 * (1 + std::abs(rhs)));
}

}  // namespace
}  // namespace tmt
