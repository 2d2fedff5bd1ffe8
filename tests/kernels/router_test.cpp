// Router: known logits pick known experts (also group-limited, with an expert bias); fp64 finite
// differences through every output (probs, top-k weights, lse) for softmax and sigmoid scores,
// with and without renormalisation, with groups, a bias and a scaling factor; the load-balancing,
// z- and sequence-wise losses against finite differences of their formulas (the last split over
// two ranks mid-sequence).
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
  router_fwd(kCpu, probs, idx, w, lse, logits, Tensor{}, {2, RouterScore::kSoftmax, true});
  EXPECT_EQ(idx.ptr<int32_t>()[0], 1);
  EXPECT_EQ(idx.ptr<int32_t>()[1], 3);
  EXPECT_EQ(idx.ptr<int32_t>()[2], 0);
  EXPECT_EQ(idx.ptr<int32_t>()[3], 2);
  EXPECT_DOUBLE_EQ(w.ptr<double>()[0], 0.5);
  EXPECT_NEAR(w.ptr<double>()[2], std::exp(3.0) / (std::exp(3.0) + std::exp(0.5)), 1e-15);
  const double z0 = 1 + 2 * std::exp(2.0) + std::exp(1.0);
  EXPECT_NEAR(lse.ptr<double>()[0], std::log(z0), 1e-14);
  EXPECT_NEAR(probs.ptr<double>()[1], std::exp(2.0) / z0, 1e-15);
  router_fwd(kCpu, probs, idx, w, lse, logits, Tensor{}, {2, RouterScore::kSigmoid, false});
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
  router_fwd(kCpu, probs, idx, w, lse, logits, Tensor{}, p);
  std::vector<int32_t> chosen(idx.ptr<int32_t>(), idx.ptr<int32_t>() + t * k);
  auto loss = [&] {
    router_fwd(kCpu, probs, idx, w, lse, logits, Tensor{}, p);
    EXPECT_TRUE(std::equal(chosen.begin(), chosen.end(), idx.ptr<int32_t>())) << "the choice moved";
    return test::dot(w, dw) + test::dot(probs, dp) + test::dot(lse, dl);
  };
  router_bwd(kCpu, dlogits, dw, dp, dl, probs, idx, w, logits, p);
  test::expect_close(test::to_doubles(dlogits), test::numeric_gradient(loss, logits), 1e-8,
                     "dlogits");
  // Without the optional terms only the top-k weights' gradient flows.
  auto loss_w = [&] {
    router_fwd(kCpu, probs, idx, w, lse, logits, Tensor{}, p);
    return test::dot(w, dw);
  };
  router_fwd(kCpu, probs, idx, w, lse, logits, Tensor{},
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
  router_fwd(kCpu, probs, idx, w, lse, logits, Tensor{}, p);
  // f_e from the (fixed) choice, by hand
  std::vector<double> f(static_cast<size_t>(e), 0.0);
  for (int64_t i = 0; i < t * k; ++i)
    f[static_cast<size_t>(idx.ptr<int32_t>()[i])] += 1.0 / (t * k);
  const double coeff = 0.3, zc = 0.05, weight = 0.5;
  auto aux_of = [&] {
    router_fwd(kCpu, probs, idx, w, lse, logits, Tensor{}, p);
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
  router_fwd(kCpu, probs, idx, w, lse, logits, Tensor{}, p);
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
  router_fwd(kCpu, probs, idx, w, lse, logits, Tensor{},
             RouterParams{k, RouterScore::kSoftmax, true});
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

TEST(Router, GroupLimitedChoiceWithBiasAndScaling) {
  // 6 experts in 3 groups of 2, the best 2 groups eligible. Sigmoid scores of the logits below:
  // expert 0 has the largest score but its group (0, 1) sums lowest once the bias is added.
  Arena a(Device::kCpu, 1 << 14, "t");
  Tensor logits = a.alloc(DType::kF64, {1, 6}), probs = a.alloc(DType::kF64, {1, 6});
  Tensor idx = a.alloc(DType::kI32, {1, 2}), w = a.alloc(DType::kF64, {1, 2}),
         lse = a.alloc(DType::kF64, {1}), bias = a.alloc(DType::kF64, {6});
  const double l[] = {3.0, -3.0, 1.0, 0.5, 0.0, 0.2};
  const double b[] = {0.0, -0.1, 0.0, -0.4, 0.3, 0.3};
  std::copy(l, l + 6, logits.ptr<double>());
  std::copy(b, b + 6, bias.ptr<double>());
  const auto sig = [](double x) { return 1 / (1 + std::exp(-x)); };
  const RouterParams p{.top_k = 2,
                       .score = RouterScore::kSigmoid,
                       .renormalize = true,
                       .n_groups = 3,
                       .topk_groups = 2,
                       .scaling = 2.5};
  // biased groups: {0,1}: 0.953 - 0.053 = 0.90; {2,3}: 0.731 + 0.222 = 0.953; {4,5}: 0.8 + 0.85
  // = 1.65 -> groups 2 and 1 eligible, so expert 5 (0.85), then 4 (0.8): not expert 0.
  router_fwd(kCpu, probs, idx, w, lse, logits, bias, p);
  EXPECT_EQ(idx.ptr<int32_t>()[0], 5);
  EXPECT_EQ(idx.ptr<int32_t>()[1], 4);
  // The weights are the unbiased scores, renormalised, then scaled.
  EXPECT_NEAR(w.ptr<double>()[0], 2.5 * sig(0.2) / (sig(0.2) + sig(0.0)), 1e-15);
  EXPECT_NEAR(w.ptr<double>()[1], 2.5 * sig(0.0) / (sig(0.2) + sig(0.0)), 1e-15);
  // Without the bias: {0,1} 1.0, {2,3} 1.353, {4,5} 1.05 -> experts 2 (0.731) and 3 (0.622).
  router_fwd(kCpu, probs, idx, w, lse, logits, Tensor{}, p);
  EXPECT_EQ(idx.ptr<int32_t>()[0], 2);
  EXPECT_EQ(idx.ptr<int32_t>()[1], 3);
  // One group: the plain top-2 of the biased scores.
  router_fwd(kCpu, probs, idx, w, lse, logits, bias, {2, RouterScore::kSigmoid, false});
  EXPECT_EQ(idx.ptr<int32_t>()[0], 0);
  EXPECT_EQ(idx.ptr<int32_t>()[1], 5);
  EXPECT_NEAR(w.ptr<double>()[1], sig(0.2), 1e-15);
}

TEST(RouterGrad, GroupLimitedBiasedScaledMatchesFiniteDifferences) {
  const int64_t t = 9, e = 8, k = 3;
  Arena a(Device::kCpu, 1 << 18, "t");
  Tensor logits = a.alloc(DType::kF64, {t, e}), probs = a.alloc(DType::kF64, {t, e});
  Tensor idx = a.alloc(DType::kI32, {t, k}), w = a.alloc(DType::kF64, {t, k}),
         lse = a.alloc(DType::kF64, {t}), bias = a.alloc(DType::kF64, {e});
  Tensor dw = a.alloc(DType::kF64, {t, k}), dp = a.alloc(DType::kF64, {t, e}),
         dl = a.alloc(DType::kF64, {t}), dlogits = a.alloc(DType::kF64, {t, e});
  test::fill_normal(logits, 11, 2.0);
  test::fill_normal(bias, 12, 0.3);
  test::fill_normal(dw, 13);
  test::fill_normal(dp, 14);
  test::fill_normal(dl, 15);
  for (RouterScore score : {RouterScore::kSigmoid, RouterScore::kSoftmax}) {
    for (bool renormalize : {true, false}) {
      const RouterParams p{k, score, renormalize, 4, 2, 2.5};
      router_fwd(kCpu, probs, idx, w, lse, logits, bias, p);
      std::vector<int32_t> chosen(idx.ptr<int32_t>(), idx.ptr<int32_t>() + t * k);
      auto loss = [&] {
        router_fwd(kCpu, probs, idx, w, lse, logits, bias, p);
        EXPECT_TRUE(std::equal(chosen.begin(), chosen.end(), idx.ptr<int32_t>()))
            << "the choice moved";
        return test::dot(w, dw) + test::dot(probs, dp) + test::dot(lse, dl);
      };
      router_bwd(kCpu, dlogits, dw, dp, dl, probs, idx, w, logits, p);
      test::expect_close(test::to_doubles(dlogits), test::numeric_gradient(loss, logits), 1e-8,
                         "dlogits (groups, bias, scaling)");
    }
  }
}

// The sequence-wise balance loss straight from its formula (f from the fixed choice).
double seq_aux_by_hand(const Tensor& probs, const std::vector<int32_t>& idx, int64_t first,
                       int64_t seq, int64_t batch, int64_t k, double coeff) {
  const int64_t t = probs.size(0), e = probs.size(1);
  std::vector<double> f(static_cast<size_t>(batch * e), 0.0), pm(f.size(), 0.0);
  for (int64_t r = 0; r < t; ++r) {
    const int64_t b = (first + r) / seq;
    double sum = 0;
    for (int64_t j = 0; j < e; ++j) sum += probs.ptr<double>()[r * e + j];
    for (int64_t j = 0; j < e; ++j)
      pm[static_cast<size_t>(b * e + j)] += probs.ptr<double>()[r * e + j] / sum / seq;
    for (int64_t c = 0; c < k; ++c)
      f[static_cast<size_t>(b * e + idx[static_cast<size_t>(r * k + c)])] +=
          static_cast<double>(e) / static_cast<double>(k * seq);
  }
  double loss = 0;
  for (size_t i = 0; i < f.size(); ++i) loss += f[i] * pm[i];
  return coeff * loss / static_cast<double>(batch);
}

TEST(RouterLosses, SequenceWiseLossAndItsGradientSplitOverRanks) {
  // 3 sequences of 5 tokens; "rank" 0 holds tokens [0, 7), rank 1 [7, 15): sequence 1 is split.
  const int64_t seq = 5, batch = 3, t = seq * batch, e = 6, k = 2, split = 7;
  Arena a(Device::kCpu, 1 << 18, "t");
  Tensor logits = a.alloc(DType::kF64, {t, e}), probs = a.alloc(DType::kF64, {t, e});
  Tensor idx = a.alloc(DType::kI32, {t, k}), w = a.alloc(DType::kF64, {t, k}),
         lse = a.alloc(DType::kF64, {t}), bias = a.alloc(DType::kF64, {e});
  Tensor dprobs = a.alloc(DType::kF64, {t, e}), dw = a.alloc(DType::kF64, {t, k});
  Tensor dlogits = a.alloc(DType::kF64, {t, e});
  Tensor stats = a.alloc(DType::kF64, {batch, 2 * e}), part = a.alloc(DType::kF64, {batch, 2 * e});
  test::fill_normal(logits, 21, 1.5);
  test::fill_normal(bias, 22, 0.2);
  const double coeff = 0.3, weight = 0.5;
  for (RouterScore score : {RouterScore::kSigmoid, RouterScore::kSoftmax}) {
    const RouterParams p{k, score, true, 3, 2, 1.0};
    router_fwd(kCpu, probs, idx, w, lse, logits, bias, p);
    const std::vector<int32_t> chosen(idx.ptr<int32_t>(), idx.ptr<int32_t>() + t * k);
    // The two ranks' statistics, summed; each rank's gradient rows from the sum.
    seq_aux_stats(kCpu, stats, probs.slice(0, split), idx.slice(0, split), 0, seq);
    seq_aux_stats(kCpu, part, probs.slice(split, t), idx.slice(split, t), split, seq);
    for (int64_t i = 0; i < stats.numel(); ++i) stats.ptr<double>()[i] += part.ptr<double>()[i];
    std::fill_n(dprobs.ptr<double>(), dprobs.numel(), 0.0);
    const double l0 = seq_aux_from_stats(kCpu, dprobs.slice(0, split), probs.slice(0, split), stats,
                                         0, seq, seq, k, coeff, weight);
    const double l1 = seq_aux_from_stats(kCpu, dprobs.slice(split, t), probs.slice(split, t), stats,
                                         split, seq, seq, k, coeff, weight);
    const double expected = seq_aux_by_hand(probs, chosen, 0, seq, batch, k, coeff);
    EXPECT_NEAR(l0, expected, 1e-15);
    EXPECT_NEAR(l1, expected, 1e-15);
    EXPECT_GT(expected, 0.0);
    auto loss = [&] {
      router_fwd(kCpu, probs, idx, w, lse, logits, bias, p);
      EXPECT_TRUE(std::equal(chosen.begin(), chosen.end(), idx.ptr<int32_t>()));
      return weight * seq_aux_by_hand(probs, chosen, 0, seq, batch, k, coeff);
    };
    std::fill_n(dw.ptr<double>(), dw.numel(), 0.0);
    router_fwd(kCpu, probs, idx, w, lse, logits, bias, p);
    router_bwd(kCpu, dlogits, dw, dprobs, Tensor{}, probs, idx, w, logits, p);
    // 1e-7: under softmax the normalisation leaves gradients near 1e-4, where the differences'
    // own noise (~4e-11 absolute) is a few 1e-8 of the norm
    test::expect_close(test::to_doubles(dlogits), test::numeric_gradient(loss, logits), 1e-7,
                       "seq aux dlogits");
  }
}

TEST(RouterLosses, SequenceWiseLossOverContextParallelChunks) {
  // 2 sequences of 8 tokens in 4 chunks of 2 over 2 context-parallel ranks: rank 0 holds chunks 0
  // and 3 of each, rank 1 chunks 1 and 2, so each rank numbers 4 rows per sequence (seq_len 4)
  // of sequences of 8 (seq_tokens). The summed statistics give every rank the one-rank loss, and
  // each rank's gradient rows are the one-rank gradient's rows of its tokens.
  const int64_t seq = 8, local = 4, c = 2, batch = 2, t = seq * batch, e = 6, k = 2;
  Arena a(Device::kCpu, 1 << 18, "t");
  Tensor logits = a.alloc(DType::kF64, {t, e}), probs = a.alloc(DType::kF64, {t, e});
  Tensor idx = a.alloc(DType::kI32, {t, k}), w = a.alloc(DType::kF64, {t, k}),
         lse = a.alloc(DType::kF64, {t}), bias = a.alloc(DType::kF64, {e});
  Tensor whole = a.alloc(DType::kF64, {batch, 2 * e}), dwhole = a.alloc(DType::kF64, {t, e});
  test::fill_normal(logits, 31, 1.5);
  test::fill_normal(bias, 32, 0.2);
  const double coeff = 0.3, weight = 0.5;
  router_fwd(kCpu, probs, idx, w, lse, logits, bias, {k, RouterScore::kSigmoid, true, 3, 2, 1.0});
  seq_aux_stats(kCpu, whole, probs, idx, 0, seq);
  std::fill_n(dwhole.ptr<double>(), dwhole.numel(), 0.0);
  const double expected =
      seq_aux_from_stats(kCpu, dwhole, probs, whole, 0, seq, seq, k, coeff, weight);
  // Each rank's rows: for each sequence, its two chunks in order.
  const auto rows_of = [&](int64_t rank) {
    std::vector<int64_t> rows;
    for (int64_t b = 0; b < batch; ++b) {
      for (const int64_t chunk : {rank, 3 - rank}) {
        for (int64_t i = 0; i < c; ++i) rows.push_back(b * seq + chunk * c + i);
      }
    }
    return rows;
  };
  std::vector<Tensor> p(2), ix(2), st(2), dp(2);
  Tensor summed = a.alloc(DType::kF64, {batch, 2 * e});
  std::fill_n(summed.ptr<double>(), summed.numel(), 0.0);
  for (int64_t r = 0; r < 2; ++r) {
    p[r] = a.alloc(DType::kF64, {batch * local, e});
    ix[r] = a.alloc(DType::kI32, {batch * local, k});
    st[r] = a.alloc(DType::kF64, {batch, 2 * e});
    dp[r] = a.alloc(DType::kF64, {batch * local, e});
    const std::vector<int64_t> rows = rows_of(r);
    for (size_t i = 0; i < rows.size(); ++i) {
      std::copy_n(probs.ptr<double>() + rows[i] * e, e, p[r].ptr<double>() + i * e);
      std::copy_n(idx.ptr<int32_t>() + rows[i] * k, k, ix[r].ptr<int32_t>() + i * k);
    }
    seq_aux_stats(kCpu, st[r], p[r], ix[r], 0, local);
    for (int64_t i = 0; i < summed.numel(); ++i) summed.ptr<double>()[i] += st[r].ptr<double>()[i];
  }
  for (int64_t r = 0; r < 2; ++r) {
    std::fill_n(dp[r].ptr<double>(), dp[r].numel(), 0.0);
    const double l = seq_aux_from_stats(kCpu, dp[r], p[r], summed, 0, local, seq, k, coeff, weight);
    EXPECT_NEAR(l, expected, 1e-15) << "rank " << r;
    const std::vector<int64_t> rows = rows_of(r);
    for (size_t i = 0; i < rows.size(); ++i) {
      for (int64_t j = 0; j < e; ++j) {
        EXPECT_NEAR(dp[r].ptr<double>()[i * e + j], dwhole.ptr<double>()[rows[i] * e + j], 1e-15)
            << "rank " << r << " row " << rows[i];
      }
    }
  }
  EXPECT_GT(expected, 0.0);
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
  router_fwd(kCpu, p64, i64, w64, s64, l64, Tensor{}, {k, RouterScore::kSoftmax, true});
  router_fwd(kCpu, p32, i32, w32, s32, l32, Tensor{}, {k, RouterScore::kSoftmax, true});
  EXPECT_TRUE(std::equal(i64.ptr<int32_t>(), i64.ptr<int32_t>() + t * k, i32.ptr<int32_t>()));
  test::expect_close(test::to_doubles(w32), test::to_doubles(w64), 1e-6, "topk_w f32 vs f64");
  test::expect_close(test::to_doubles(p32), test::to_doubles(p64), 1e-6, "probs f32 vs f64");
}

}  // namespace
}  // namespace tmt
