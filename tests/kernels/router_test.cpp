// Router: known logits pick known experts; fp64 finite differences through every output (probs,
// top-k weights, lse) for softmax and sigmoid scores, with and without renormalisation; the
// load-balancing and z-losses against finite differences of their formulas.
#include "kernels/router.h"

#include <gtest/gtest.h>

#include <cmath>

#include "kernels/base/arena.h"
#include "kernels/cast.h"
#include "tests/support/compare.h"
#include "tests/support/grad_check.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};

TEST(Router, KnownLogitsPickKnownExperts) {
  Arena a(Device::kCpu, 1 << 14, "t");
  Tensor logits = a.alloc(DType::kF64, {2, 4}), probs = a.alloc(DType::kF64, {2, 4});
  Tensor idx = a.alloc(DType::kI32, {2, 2}), w = a.alloc(DType::kF64, {2, 2}),
         lse = a.alloc(DType::kF64, {2});
  const double l[] = {0.0, 2.0,  1.0, 2.0,  //  a tie between experts 1 and 3: 1 first
                      3.0, -1.0, 0.5, 0.0};
  std::copy(l, l + 8, logits.ptr<double>());
  router_fwd(kCpu, probs, idx, w, lse, logits, {2, RouterScore::kSoftmax, true});
  EXPECT_EQ(idx.ptr<int32_t>()[0], 1);
  EXPECT_EQ(idx.ptr<int32_t>()[1], 3);
  EXPECT_EQ(idx.ptr<int32_t>()[2], 0);
  EXPECT_EQ(idx.ptr<int32_t>()[3], 2);
  EXPECT_DOUBLE_EQ(w.ptr<double>()[0], 0.5);
  EXPECT_NEAR(w.ptr<double>()[2], std::exp(3.0) / (std::exp(3.0) + std::exp(0.5)), 1e-15);
  const double z0 = 1 + 2 * std::exp(2.0) + std::exp(1.0);
  EXPECT_NEAR(lse.ptr<double>()[0], std::log(z0), 1e-14);
  EXPECT_NEAR(probs.ptr<double>()[1], std::exp(2.0) / z0, 1e-15);
  router_fwd(kCpu, probs, idx, w, lse, logits, {2, RouterScore::kSigmoid, false});
  EXPECT_NEAR(w.ptr<double>()[2], 1 / (1 + std::exp(-3.0)), 1e-15);
}

struct Variant {
  RouterScore score;
  bool renormalize;
};

class RouterGrad : public ::testing::TestWithParam<Variant> {};

TEST_P(RouterGrad, MatchesFiniteDifferences) {
  const Variant v = GetParam();
  const int64_t t = 7, e = 6, k = 3;
  Arena a(Device::kCpu, 1 << 18, "t");
  Tensor logits = a.alloc(DType::kF64, {t, e}), probs = a.alloc(DType::kF64, {t, e});
  Tensor idx = a.alloc(DType::kI32, {t, k}), w = a.alloc(DType::kF64, {t, k}),
         lse = a.alloc(DType::kF64, {t});
  Tensor dw = a.alloc(DType::kF64, {t, k}), dp = a.alloc(DType::kF64, {t, e}),
         dl = a.alloc(DType::kF64, {t});
  Tensor dlogits = a.alloc(DType::kF64, {t, e});
  test::fill_normal(logits, 1, 2.0);
  test::fill_normal(dw, 2);
  test::fill_normal(dp, 3);
  test::fill_normal(dl, 4);
  const RouterParams p{k, v.score, v.renormalize};
  router_fwd(kCpu, probs, idx, w, lse, logits, p);
  std::vector<int32_t> chosen(idx.ptr<int32_t>(), idx.ptr<int32_t>() + t * k);
  auto loss = [&] {
    router_fwd(kCpu, probs, idx, w, lse, logits, p);
    EXPECT_TRUE(std::equal(chosen.begin(), chosen.end(), idx.ptr<int32_t>())) << "the choice moved";
    return test::dot(w, dw) + test::dot(probs, dp) + test::dot(lse, dl);
  };
  router_bwd(kCpu, dlogits, dw, dp, dl, probs, idx, w, logits, p);
  test::expect_close(test::to_doubles(dlogits), test::numeric_gradient(loss, logits), 1e-8,
                     "dlogits");
  // Without the optional terms only the top-k weights' gradient flows.
  auto loss_w = [&] {
    router_fwd(kCpu, probs, idx, w, lse, logits, p);
    return test::dot(w, dw);
  };
  router_fwd(kCpu, probs, idx, w, lse, logits,
             p);  // the finite differences left the last element moved
  router_bwd(kCpu, dlogits, dw, Tensor{}, Tensor{}, probs, idx, w, logits, p);
  test::expect_close(test::to_doubles(dlogits), test::numeric_gradient(loss_w, logits), 1e-8,
                     "dlogits (top-k only)");
}

INSTANTIATE_TEST_SUITE_P(Variants, RouterGrad,
                         ::testing::Values(Variant{RouterScore::kSoftmax, true},
                                           Variant{RouterScore::kSoftmax, false},
                                           Variant{RouterScore::kSigmoid, true},
                                           Variant{RouterScore::kSigmoid, false}));

TEST(RouterLosses, BalanceAndZLossAndTheirGradients) {
  const int64_t t = 9, e = 5, k = 2;
  Arena a(Device::kCpu, 1 << 18, "t");
  Tensor logits = a.alloc(DType::kF64, {t, e}), probs = a.alloc(DType::kF64, {t, e});
  Tensor idx = a.alloc(DType::kI32, {t, k}), w = a.alloc(DType::kF64, {t, k}),
         lse = a.alloc(DType::kF64, {t});
  Tensor dprobs = a.alloc(DType::kF64, {t, e}), dlse = a.alloc(DType::kF64, {t});
  Tensor dlogits = a.alloc(DType::kF64, {t, e}), dw = a.alloc(DType::kF64, {t, k});
  test::fill_normal(logits, 7, 1.5);
  const RouterParams p{k, RouterScore::kSoftmax, true};
  router_fwd(kCpu, probs, idx, w, lse, logits, p);
  // f_e from the (fixed) choice, by hand
  std::vector<double> f(static_cast<size_t>(e), 0.0);
  for (int64_t i = 0; i < t * k; ++i)
    f[static_cast<size_t>(idx.ptr<int32_t>()[i])] += 1.0 / (t * k);
  const double coeff = 0.3, zc = 0.05, weight = 0.5;
  auto aux_of = [&] {
    router_fwd(kCpu, probs, idx, w, lse, logits, p);
    double s = 0;
    for (int64_t j = 0; j < e; ++j) {
      double pj = 0;
      for (int64_t i = 0; i < t; ++i) pj += probs.ptr<double>()[i * e + j] / t;
      s += f[static_cast<size_t>(j)] * pj;
    }
    double z = 0;
    for (int64_t i = 0; i < t; ++i) z += lse.ptr<double>()[i] * lse.ptr<double>()[i] / t;
    return weight * (coeff * e * s + zc * z);
  };
  const double expected = aux_of() / weight;
  router_fwd(kCpu, probs, idx, w, lse, logits, p);
  const double aux = load_balancing_loss(kCpu, dprobs, probs, idx, coeff, weight);
  const double z = z_loss(kCpu, dlse, lse, zc, weight);
  EXPECT_NEAR(aux + z, expected, 1e-14);
  std::fill(dw.ptr<double>(), dw.ptr<double>() + dw.numel(), 0.0);
  router_bwd(kCpu, dlogits, dw, dprobs, dlse, probs, idx, w, logits, p);
  test::expect_close(test::to_doubles(dlogits), test::numeric_gradient(aux_of, logits), 1e-8,
                     "aux + z dlogits");
}

TEST(RouterLosses, SplitTokensWithSummedStatisticsGiveTheWholeBatchLosses) {
  // Sequence parallelism: two ranks each hold part of a micro-batch's tokens; their summed
  // statistics must give exactly the losses and gradient rows of the whole.
  const int64_t t = 11, e = 6, k = 2, first = 4;
  Arena a(Device::kCpu, 1 << 18, "t");
  Tensor logits = a.alloc(DType::kF64, {t, e}), probs = a.alloc(DType::kF64, {t, e});
  Tensor idx = a.alloc(DType::kI32, {t, k}), w = a.alloc(DType::kF64, {t, k}),
         lse = a.alloc(DType::kF64, {t});
  Tensor dprobs = a.alloc(DType::kF64, {t, e}), dlse = a.alloc(DType::kF64, {t});
  test::fill_normal(logits, 9, 1.2);
  router_fwd(kCpu, probs, idx, w, lse, logits, RouterParams{k, RouterScore::kSoftmax, true});
  const double aux = load_balancing_loss(kCpu, dprobs, probs, idx, 0.3, 0.5);
  const double z = z_loss(kCpu, dlse, lse, 0.05, 0.5);

  Tensor stats = a.alloc(DType::kF64, {2 * e + 1}), part = a.alloc(DType::kF64, {2 * e + 1});
  Tensor dprobs_split = a.alloc(DType::kF64, {t, e}), dlse_split = a.alloc(DType::kF64, {t});
  router_stats(kCpu, stats, probs.slice(0, first), idx.slice(0, first), lse.slice(0, first));
  router_stats(kCpu, part, probs.slice(first, t), idx.slice(first, t), lse.slice(first, t));
  for (int64_t i = 0; i < 2 * e + 1; ++i) stats.ptr<double>()[i] += part.ptr<double>()[i];
  double aux_split = 0, z_split = 0;
  for (auto [b, end] : {std::pair<int64_t, int64_t>{0, first}, {first, t}}) {
    aux_split = load_balancing_from_stats(kCpu, dprobs_split.slice(b, end), stats, t, k, 0.3, 0.5);
    z_split =
        z_loss_from_stats(kCpu, dlse_split.slice(b, end), lse.slice(b, end), stats, t, 0.05, 0.5);
  }
  EXPECT_NEAR(aux_split, aux, 1e-15);
  EXPECT_NEAR(z_split, z, 1e-15);
  EXPECT_TRUE(test::all_close(dprobs_split, dprobs, 1e-15));
  EXPECT_TRUE(test::all_close(dlse_split, dlse, 1e-15));
  EXPECT_GT(aux, 0.0);
}

TEST(Router, F32AgreesWithF64) {
  const int64_t t = 33, e = 8, k = 2;
  Arena a(Device::kCpu, 1 << 18, "t");
  Tensor l64 = a.alloc(DType::kF64, {t, e}), l32 = a.alloc(DType::kF32, {t, e});
  test::fill_normal(l64, 9);
  cast(kCpu, l32, l64);
  Tensor p64 = a.alloc(DType::kF64, {t, e}), p32 = a.alloc(DType::kF32, {t, e});
  Tensor i64 = a.alloc(DType::kI32, {t, k}), i32 = a.alloc(DType::kI32, {t, k});
  Tensor w64 = a.alloc(DType::kF64, {t, k}), w32 = a.alloc(DType::kF32, {t, k});
  Tensor s64 = a.alloc(DType::kF64, {t}), s32 = a.alloc(DType::kF32, {t});
  router_fwd(kCpu, p64, i64, w64, s64, l64, {k, RouterScore::kSoftmax, true});
  router_fwd(kCpu, p32, i32, w32, s32, l32, {k, RouterScore::kSoftmax, true});
  EXPECT_TRUE(std::equal(i64.ptr<int32_t>(), i64.ptr<int32_t>() + t * k, i32.ptr<int32_t>()));
  test::expect_close(test::to_doubles(w32), test::to_doubles(w64), 1e-6, "topk_w f32 vs f64");
  test::expect_close(test::to_doubles(p32), test::to_doubles(p64), 1e-6, "probs f32 vs f64");
}

}  // namespace
}  // namespace tmt
