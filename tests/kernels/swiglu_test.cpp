// swiglu: hand values at gate 0 and gate ln 3 (sigmoid 3/4); fp64 finite differences of dgu;
// in-place dgu over gu; f32 vs f64.
#include "kernels/swiglu.h"

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

TEST(SwiGlu, ByHand) {
  Arena a(Device::kCpu, 1 << 12, "test");
  // One token, F = 2: gate = [0, ln 3], up = [5, 2]. sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4.
  Tensor gu = a.alloc(DType::kF64, {1, 4}), h = a.alloc(DType::kF64, {1, 2});
  const double l3 = std::log(3.0);
  const V in = {0, l3, 5, 2};
  for (size_t i = 0; i < in.size(); ++i) gu.ptr<double>()[i] = in[i];
  swiglu_fwd(kCpu, h, gu);
  EXPECT_TRUE(test::all_close(test::to_doubles(h), V{0, 0.75 * l3 * 2}, 1e-15));
  // dh = [1, 1]: dgate = up * s * (1 + g (1 - s)) = [5/2, 2 * 3/4 * (1 + ln3 / 4)],
  // dup = silu(g) = [0, 3/4 ln 3].
  Tensor dh = a.alloc(DType::kF64, {1, 2}), dgu = a.alloc(DType::kF64, {1, 4});
  dh.ptr<double>()[0] = dh.ptr<double>()[1] = 1.0;
  swiglu_bwd(kCpu, dgu, dh, gu);
  EXPECT_TRUE(
      test::all_close(test::to_doubles(dgu), V{2.5, 1.5 * (1 + l3 / 4), 0, 0.75 * l3}, 1e-15));
}

TEST(SwiGlu, GradientCheckF64) {
  const int64_t n_tokens = 7, f = 12;
  Arena a(Device::kCpu, 1 << 16, "test");
  Tensor gu = a.alloc(DType::kF64, {n_tokens, 2 * f}), h = a.alloc(DType::kF64, {n_tokens, f});
  Tensor dh = a.alloc(DType::kF64, {n_tokens, f}), dgu = a.alloc(DType::kF64, {n_tokens, 2 * f});
  test::fill_normal(gu, 1, 2.0);
  test::fill_normal(dh, 2);
  test::fill_normal(dgu, 3);
  auto loss = [&] {
    swiglu_fwd(kCpu, h, gu);
    return test::dot(dh, h);
  };
  const V numeric = test::numeric_gradient(loss, gu);
  swiglu_bwd(kCpu, dgu, dh, gu);
  test::expect_close(test::to_doubles(dgu), numeric, 1e-8, "dgu vs finite differences");
  swiglu_bwd(kCpu, gu, dh, gu);  // in place
  EXPECT_TRUE(test::all_close(gu, dgu, 0.0));
}

TEST(SwiGlu, F32MatchesF64) {
  const int64_t n_tokens = 19, f = 37;
  Arena a(Device::kCpu, 1 << 18, "test");
  const DType types[2] = {DType::kF32, DType::kF64};
  Tensor h[2], dgu[2];
  for (int k = 0; k < 2; ++k) {
    Tensor gu = a.alloc(types[k], {n_tokens, 2 * f}), dh = a.alloc(types[k], {n_tokens, f});
    h[k] = a.alloc(types[k], {n_tokens, f});
    dgu[k] = a.alloc(types[k], {n_tokens, 2 * f});
    test::fill_normal(gu, 4, 3.0);
    test::fill_normal(dh, 5);
    swiglu_fwd(kCpu, h[k], gu);
    swiglu_bwd(kCpu, dgu[k], dh, gu);
  }
  EXPECT_TRUE(test::all_close(h[0], h[1], 1e-6));
  EXPECT_TRUE(test::all_close(dgu[0], dgu[1], 1e-6));
}

}  // namespace
}  // namespace tmt
