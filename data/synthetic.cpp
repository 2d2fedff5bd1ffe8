#include "data/synthetic.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "kernels/base/check.h"
#include "kernels/base/rng.h"

namespace tmt {
namespace {

// Gamma(shape, 1) from the counter-based stream (Marsaglia & Tsang; shape < 1 by the boost
// Gamma(a) = Gamma(a + 1) · U^(1/a)). `counter` advances past the draws used.
double gamma_draw(double shape, uint64_t seed, uint64_t stream, uint64_t& counter) {
  if (shape < 1.0) {
    const double u = random_uniform(seed, stream, counter++);
    return gamma_draw(shape + 1.0, seed, stream, counter) * std::pow(u, 1.0 / shape);
  }
  const double d = shape - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    const double x = random_normal(seed, stream, counter++);
    const double v = std::pow(1.0 + c * x, 3);
    if (v <= 0) continue;
    const double u = random_uniform(seed, stream, counter++);
    if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
  }
}

size_t pick(std::span<const double> cumulative, double u) {
  const auto it = std::upper_bound(cumulative.begin(), cumulative.end(), u);
  return std::min(static_cast<size_t>(it - cumulative.begin()), cumulative.size() - 1);
}

}  // namespace

MarkovChain::MarkovChain(int64_t vocab_size, int64_t branching, double concentration, uint64_t seed)
    : vocab_(vocab_size), branching_(branching) {
  TMT_CHECK(vocab_size >= 1 && branching >= 1 && branching <= vocab_size && concentration > 0,
            "Markov chain: vocab {}, branching {}, concentration {}", vocab_size, branching,
            concentration);
  const auto v = static_cast<size_t>(vocab_size), b = static_cast<size_t>(branching);
  next_.resize(v * b);
  prob_.resize(v * b);
  cumulative_.resize(v * b);
  for (size_t i = 0; i < v; ++i) {
    uint64_t counter = 0;
    // Distinct successors by rejection: draws until `branching` different tokens are found.
    for (size_t k = 0; k < b;) {
      const auto cand = static_cast<int32_t>(random_bits(seed, i, counter++) % v);
      const auto row = std::span<int32_t>(next_).subspan(i * b, k);
      if (std::find(row.begin(), row.end(), cand) != row.end()) continue;
      next_[i * b + k++] = cand;
    }
    double sum = 0;
    for (size_t k = 0; k < b; ++k)
      sum += prob_[i * b + k] = gamma_draw(concentration, seed ^ 0x9a11a, i, counter);
    double acc = 0;
    for (size_t k = 0; k < b; ++k) {
      prob_[i * b + k] /= sum;
      acc += prob_[i * b + k];
      cumulative_[i * b + k] = acc;
    }
    cumulative_[i * b + b - 1] = 1.0;
  }
  // The stationary distribution by power iteration on the lazy chain (½I + ½P), which has the same
  // stationary distributions and converges even when P is periodic.
  pi_.assign(v, 1.0 / static_cast<double>(v));
  std::vector<double> next(v);
  for (int iter = 0; iter < 20000; ++iter) {
    std::fill(next.begin(), next.end(), 0.0);
    for (size_t i = 0; i < v; ++i) {
      next[i] += 0.5 * pi_[i];
      for (size_t k = 0; k < b; ++k)
        next[static_cast<size_t>(next_[i * b + k])] += 0.5 * pi_[i] * prob_[i * b + k];
    }
    double diff = 0;
    for (size_t i = 0; i < v; ++i) diff += std::fabs(next[i] - pi_[i]);
    pi_.swap(next);
    if (diff < 1e-14) break;
  }
  pi_cumulative_.resize(v);
  double acc = 0;
  for (size_t i = 0; i < v; ++i) {
    acc += pi_[i];
    pi_cumulative_[i] = acc;
    double h = 0;
    for (size_t k = 0; k < b; ++k) {
      const double p = prob_[i * b + k];
      if (p > 0) h -= p * std::log(p);
    }
    entropy_rate_ += pi_[i] * h;
  }
  pi_cumulative_.back() = 1.0;
}

std::span<const int32_t> MarkovChain::successors(int64_t i) const {
  return std::span<const int32_t>(next_).subspan(static_cast<size_t>(i * branching_),
                                                 static_cast<size_t>(branching_));
}

std::span<const double> MarkovChain::probabilities(int64_t i) const {
  return std::span<const double>(prob_).subspan(static_cast<size_t>(i * branching_),
                                                static_cast<size_t>(branching_));
}

int32_t MarkovChain::sample(uint64_t seed, int64_t index, int64_t position,
                            int32_t previous) const {
  const double u =
      random_uniform(seed, static_cast<uint64_t>(index), static_cast<uint64_t>(position));
  if (position == 0) return static_cast<int32_t>(pick(pi_cumulative_, u));
  const auto row = static_cast<size_t>(previous) * static_cast<size_t>(branching_);
  const auto cum =
      std::span<const double>(cumulative_).subspan(row, static_cast<size_t>(branching_));
  return next_[row + pick(cum, u)];
}

SyntheticSource::SyntheticSource(std::shared_ptr<const MarkovChain> chain, int64_t seq_len,
                                 uint64_t sampling_seed)
    : chain_(std::move(chain)), seq_len_(seq_len), seed_(sampling_seed) {}

void SyntheticSource::sequence(int64_t index, std::span<int32_t> out) const {
  TMT_CHECK(index >= 0 && static_cast<int64_t>(out.size()) == seq_len_ + 1,
            "sequence {} into {} tokens", index, out.size());
  int32_t prev = 0;
  for (size_t i = 0; i < out.size(); ++i)
    prev = out[i] = chain_->sample(seed_, index, static_cast<int64_t>(i), prev);
}

std::string SyntheticSource::describe() const {
  return fmt::format(
      "synthetic Markov chain over {} tokens, {} successors each; optimal loss (entropy rate) "
      "{:.4f}",
      chain_->vocab_size(), chain_->branching(), chain_->entropy_rate());
}

}  // namespace tmt
