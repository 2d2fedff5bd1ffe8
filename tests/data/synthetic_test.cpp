// The synthetic Markov source: rows are distributions with `branching` successors, π is stationary,
// sampled sequences have the entropy rate as their mean negative log-likelihood, and sampling is
// pure.
#include "data/synthetic.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

namespace tmt {
namespace {

TEST(MarkovChain, RowsAreDistributionsOverDistinctSuccessors) {
  const MarkovChain c(97, 5, 0.7, 3);
  for (int64_t i = 0; i < 97; ++i) {
    const auto next = c.successors(i);
    const auto p = c.probabilities(i);
    EXPECT_EQ(std::set<int32_t>(next.begin(), next.end()).size(), 5u);
    double sum = 0;
    for (double x : p) {
      EXPECT_GT(x, 0.0);
      sum += x;
    }
    EXPECT_NEAR(sum, 1.0, 1e-12);
  }
}

TEST(MarkovChain, StationaryDistributionIsStationary) {
  const MarkovChain c(64, 3, 1.0, 9);
  std::vector<double> next(64, 0.0);
  for (int64_t i = 0; i < 64; ++i) {
    for (int64_t k = 0; k < 3; ++k) {
      next[static_cast<size_t>(c.successors(i)[static_cast<size_t>(k)])] +=
          c.stationary()[static_cast<size_t>(i)] * c.probabilities(i)[static_cast<size_t>(k)];
    }
  }
  double diff = 0, total = 0;
  for (size_t j = 0; j < 64; ++j) {
    diff += std::fabs(next[j] - c.stationary()[j]);
    total += c.stationary()[j];
  }
  EXPECT_LT(diff, 1e-12);
  EXPECT_NEAR(total, 1.0, 1e-12);
}

TEST(SyntheticSource, EmpiricalLossMatchesTheEntropyRate) {
  auto chain = std::make_shared<const MarkovChain>(256, 4, 1.0, 7);
  const SyntheticSource source(chain, 128, 42);
  // Mean -ln P(next | current) over 200k sampled transitions, under the true chain.
  std::vector<int32_t> seq(129);
  double nll = 0;
  int64_t n = 0;
  std::map<int32_t, int64_t> first_tokens;
  for (int64_t s = 0; s < 1563; ++s) {
    source.sequence(s, seq);
    first_tokens[seq[0]]++;
    for (size_t i = 1; i < seq.size(); ++i) {
      const auto next = chain->successors(seq[i - 1]);
      const auto p = chain->probabilities(seq[i - 1]);
      const auto k =
          static_cast<size_t>(std::find(next.begin(), next.end(), seq[i]) - next.begin());
      ASSERT_LT(k, next.size()) << "a transition the chain does not have";
      nll -= std::log(p[k]);
      ++n;
    }
  }
  EXPECT_GE(n, 200000);
  const double h = chain->entropy_rate();
  EXPECT_GT(h, 0.3);
  EXPECT_LT(h, std::log(4.0));
  EXPECT_NEAR(nll / static_cast<double>(n), h, 0.01 * h);
  EXPECT_DOUBLE_EQ(source.optimal_loss(), h);
}

TEST(SyntheticSource, SequencesArePureFunctionsOfTheirIndex) {
  auto chain = std::make_shared<const MarkovChain>(50, 3, 1.0, 1);
  const SyntheticSource a(chain, 16, 5), b(chain, 16, 6);
  std::vector<int32_t> x(17), y(17), z(17);
  a.sequence(1000, x);
  a.sequence(3, z);
  a.sequence(1000, y);
  EXPECT_EQ(x, y);
  EXPECT_NE(x, z);
  b.sequence(1000, z);
  EXPECT_NE(x, z);  // another sampling seed, other sequences
}

}  // namespace
}  // namespace tmt
