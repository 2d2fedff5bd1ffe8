// Attention: hand cases (one token sees only itself; two tokens by hand; the window), fp64 finite
// differences for dq, dk, dv with and without a window, with the value head dim Dv equal to the
// query/key head dim Dqk and different from it (smaller and larger), with fewer queries than keys
// (the queries last, as context parallelism asks), and f32 against f64.
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "kernels/base/arena.h"
#include "kernels/cast.h"
#include "tests/support/compare.h"
#include "tests/support/grad_check.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};

struct Case {
  int64_t b, s, h, hk, dqk, dv, window;
  int64_t sk = 0;  // keys; 0: s
};

TEST(Attention, OneTokenReturnsItsValue) {
  Arena a(Device::kCpu, 1 << 16, "t");
  Tensor q = a.alloc(DType::kF64, {1, 1, 4, 3}), k = a.alloc(DType::kF64, {1, 1, 2, 3});
  Tensor v = a.alloc(DType::kF64, {1, 1, 2, 3}), out = a.alloc(DType::kF64, {1, 1, 4, 3});
  Tensor lse = a.alloc(DType::kF64, {1, 4, 1});
  test::fill_normal(q, 1);
  test::fill_normal(k, 2);
  test::fill_normal(v, 3);
  attention_fwd(kCpu, out, lse, q, k, v, {0.5, 0});
  for (int64_t h = 0; h < 4; ++h) {
    for (int64_t d = 0; d < 3; ++d)
      EXPECT_DOUBLE_EQ(out.ptr<double>()[h * 3 + d], v.ptr<double>()[(h / 2) * 3 + d]);
    const double s = 0.5 * (q.ptr<double>()[h * 3] * k.ptr<double>()[(h / 2) * 3] +
                            q.ptr<double>()[h * 3 + 1] * k.ptr<double>()[(h / 2) * 3 + 1] +
                            q.ptr<double>()[h * 3 + 2] * k.ptr<double>()[(h / 2) * 3 + 2]);
    EXPECT_NEAR(lse.ptr<double>()[h], s, 1e-15);  // log of one exp
  }
}

TEST(Attention, TwoTokensByHandAndTheWindow) {
  // One head, Dh = 1: q = [1, 2], k = [1, 3], v = [10, 20], scale 1.
  Arena a(Device::kCpu, 1 << 16, "t");
  Tensor q = a.alloc(DType::kF64, {1, 2, 1, 1}), k = a.alloc(DType::kF64, {1, 2, 1, 1});
  Tensor v = a.alloc(DType::kF64, {1, 2, 1, 1}), out = a.alloc(DType::kF64, {1, 2, 1, 1});
  Tensor lse = a.alloc(DType::kF64, {1, 1, 2});
  q.ptr<double>()[0] = 1, q.ptr<double>()[1] = 2;
  k.ptr<double>()[0] = 1, k.ptr<double>()[1] = 3;
  v.ptr<double>()[0] = 10, v.ptr<double>()[1] = 20;
  attention_fwd(kCpu, out, lse, q, k, v, {1.0, 0});
  // query 1 sees scores 2 and 6: weights e^2/(e^2+e^6), e^6/(e^2+e^6)
  const double w0 = std::exp(2.0) / (std::exp(2.0) + std::exp(6.0));
  EXPECT_DOUBLE_EQ(out.ptr<double>()[0], 10.0);
  EXPECT_NEAR(out.ptr<double>()[1], w0 * 10 + (1 - w0) * 20, 1e-12);
  EXPECT_NEAR(lse.ptr<double>()[1], std::log(std::exp(2.0) + std::exp(6.0)), 1e-12);
  attention_fwd(kCpu, out, lse, q, k, v, {1.0, 1});  // a window of 1: each token sees only itself
  EXPECT_DOUBLE_EQ(out.ptr<double>()[1], 20.0);
}

class AttentionGrad : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionGrad, MatchesFiniteDifferences) {
  const Case c = GetParam();
  Arena a(Device::kCpu, 1 << 20, "t");
  const int64_t sk = c.sk > 0 ? c.sk : c.s;
  const Shape qs{c.b, c.s, c.h, c.dqk}, ks{c.b, sk, c.hk, c.dqk};
  const Shape vs{c.b, sk, c.hk, c.dv}, os{c.b, c.s, c.h, c.dv};
  Tensor q = a.alloc(DType::kF64, qs), k = a.alloc(DType::kF64, ks), v = a.alloc(DType::kF64, vs);
  Tensor out = a.alloc(DType::kF64, os), lse = a.alloc(DType::kF64, {c.b, c.h, c.s});
  Tensor dout = a.alloc(DType::kF64, os), dq = a.alloc(DType::kF64, qs),
         dk = a.alloc(DType::kF64, ks), dv = a.alloc(DType::kF64, vs);
  test::fill_normal(q, 11);
  test::fill_normal(k, 12);
  test::fill_normal(v, 13);
  test::fill_normal(dout, 14);
  test::fill_uniform(dq, 15);  // junk: the backward must write, not add
  test::fill_uniform(dk, 16);
  test::fill_uniform(dv, 17);
  const AttentionParams p{1.0 / std::sqrt(static_cast<double>(c.dqk)), c.window};
  auto loss = [&] {
    attention_fwd(kCpu, out, lse, q, k, v, p);
    return test::dot(out, dout);
  };
  loss();
  attention_bwd(kCpu, dq, dk, dv, dout, q, k, v, out, lse, p);
  test::expect_close(test::to_doubles(dq), test::numeric_gradient(loss, q), 1e-7, "dq");
  test::expect_close(test::to_doubles(dk), test::numeric_gradient(loss, k), 1e-7, "dk");
  test::expect_close(test::to_doubles(dv), test::numeric_gradient(loss, v), 1e-7, "dv");
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionGrad,
                         ::testing::Values(Case{2, 7, 4, 2, 6, 6, 0}, Case{2, 7, 4, 2, 6, 6, 3},
                                           Case{1, 5, 3, 3, 4, 4, 0}, Case{1, 6, 4, 1, 2, 2, 2}));

// Dv != Dqk (multi-head latent attention's 192 / 128, scaled down): v and out narrower and wider
// than q and k, with GQA, a window and B > 1.
INSTANTIATE_TEST_SUITE_P(ValueHeadDim, AttentionGrad,
                         ::testing::Values(Case{2, 7, 4, 2, 6, 4, 0}, Case{2, 7, 4, 2, 6, 4, 3},
                                           Case{1, 6, 4, 1, 3, 5, 2}, Case{2, 5, 2, 2, 8, 3, 0}));

// Fewer queries than keys: the queries are the last S of Sk positions (context parallelism's
// chunk of a sequence against the keys up to its end), with GQA, Dv != Dqk and windows shorter and
// longer than the offset.
INSTANTIATE_TEST_SUITE_P(QueriesLast, AttentionGrad,
                         ::testing::Values(Case{2, 3, 4, 2, 6, 4, 0, 8},
                                           Case{1, 4, 4, 2, 6, 6, 3, 9},
                                           Case{2, 2, 2, 1, 4, 5, 6, 7},
                                           Case{1, 5, 2, 2, 3, 3, 0, 5}));

// Rows [a, a + C) of attention over a whole sequence are the attention of those C queries
// against the keys [0, a + C): what lets context parallelism split the queries.
TEST(Attention, AChunkOfQueriesAgainstItsPrefixEqualsTheWholeSequencesRows) {
  Arena a(Device::kCpu, 1 << 20, "t");
  const int64_t s = 12, h = 4, hk = 2, d = 6, dv = 5;
  Tensor q = a.alloc(DType::kF64, {1, s, h, d}), k = a.alloc(DType::kF64, {1, s, hk, d});
  Tensor v = a.alloc(DType::kF64, {1, s, hk, dv}), out = a.alloc(DType::kF64, {1, s, h, dv});
  Tensor lse = a.alloc(DType::kF64, {1, h, s}), dout = a.alloc(DType::kF64, {1, s, h, dv});
  test::fill_normal(q, 21);
  test::fill_normal(k, 22);
  test::fill_normal(v, 23);
  test::fill_normal(dout, 24);
  for (const int64_t window : {0, 5}) {
    const AttentionParams p{0.4, window};
    attention_fwd(kCpu, out, lse, q, k, v, p);
    const int64_t first = 3, c = 4;  // queries 3..6 against keys 0..6
    Tensor qc = a.alloc(DType::kF64, {1, c, h, d}), oc = a.alloc(DType::kF64, {1, c, h, dv});
    Tensor lc = a.alloc(DType::kF64, {1, h, c});
    std::copy_n(q.ptr<double>() + first * h * d, c * h * d, qc.ptr<double>());
    const Tensor kp{k.data, DType::kF64, Device::kCpu, {1, first + c, hk, d}};
    const Tensor vp{v.data, DType::kF64, Device::kCpu, {1, first + c, hk, dv}};
    attention_fwd(kCpu, oc, lc, qc, kp, vp, p);
    for (int64_t i = 0; i < c * h * dv; ++i)
      EXPECT_NEAR(oc.ptr<double>()[i], out.ptr<double>()[first * h * dv + i], 1e-14) << i;
    for (int64_t hi = 0; hi < h; ++hi) {
      for (int64_t i = 0; i < c; ++i)
        EXPECT_NEAR(lc.ptr<double>()[hi * c + i], lse.ptr<double>()[hi * s + first + i], 1e-14);
    }
  }
}

TEST(Attention, F32AgreesWithF64) {
  Arena a(Device::kCpu, 1 << 20, "t");
  const Shape qs{2, 9, 4, 8}, ks{2, 9, 2, 8}, vs{2, 9, 2, 6}, os{2, 9, 4, 6};  // Dqk 8, Dv 6
  Tensor q = a.alloc(DType::kF64, qs), k = a.alloc(DType::kF64, ks), v = a.alloc(DType::kF64, vs);
  Tensor dout = a.alloc(DType::kF64, os);
  test::fill_normal(q, 1);
  test::fill_normal(k, 2);
  test::fill_normal(v, 3);
  test::fill_normal(dout, 4);
  Tensor q32 = a.alloc(DType::kF32, qs), k32 = a.alloc(DType::kF32, ks),
         v32 = a.alloc(DType::kF32, vs), do32 = a.alloc(DType::kF32, os);
  for (auto [d, s] : {std::pair{q32, q}, {k32, k}, {v32, v}, {do32, dout}}) cast(kCpu, d, s);
  const AttentionParams p{0.35, 4};
  Tensor o64 = a.alloc(DType::kF64, os), l64 = a.alloc(DType::kF64, {2, 4, 9});
  Tensor o32 = a.alloc(DType::kF32, os), l32 = a.alloc(DType::kF32, {2, 4, 9});
  attention_fwd(kCpu, o64, l64, q, k, v, p);
  attention_fwd(kCpu, o32, l32, q32, k32, v32, p);
  test::expect_close(test::to_doubles(o32), test::to_doubles(o64), 1e-6, "out f32 vs f64");
  Tensor dq64 = a.alloc(DType::kF64, qs), dk64 = a.alloc(DType::kF64, ks),
         dv64 = a.alloc(DType::kF64, vs);
  Tensor dq32 = a.alloc(DType::kF32, qs), dk32 = a.alloc(DType::kF32, ks),
         dv32 = a.alloc(DType::kF32, vs);
  attention_bwd(kCpu, dq64, dk64, dv64, dout, q, k, v, o64, l64, p);
  attention_bwd(kCpu, dq32, dk32, dv32, do32, q32, k32, v32, o32, l32, p);
  test::expect_close(test::to_doubles(dq32), test::to_doubles(dq64), 1e-5, "dq f32 vs f64");
  test::expect_close(test::to_doubles(dk32), test::to_doubles(dk64), 1e-5, "dk f32 vs f64");
  test::expect_close(test::to_doubles(dv32), test::to_doubles(dv64), 1e-5, "dv f32 vs f64");
}

}  // namespace
}  // namespace tmt
