// A synthetic source whose best possible loss is known: a random sparse Markov chain over the
// vocabulary.
//
// From the chain seed, token i gets `branching` distinct successors with probabilities drawn from a
// symmetric Dirichlet(concentration) (normalised Gamma draws; small concentration = peaked rows). A
// sequence starts from the chain's stationary distribution π and follows the chain. A model that
// knows the chain predicts each next token with cross-entropy H(P_i) when the current token is i,
// and since every position is distributed as π, the optimal mean loss per predicted token is the
// entropy rate
//     H = Σ_i π_i · H(P_i)   (nats),   H(P_i) = -Σ_j P_ij ln P_ij.
// Sampling is a pure function of (sampling seed, sequence index, position): any rank can produce
// any sequence, in any order.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "data/sequence_source.h"

namespace tmt {

class MarkovChain {
 public:
  MarkovChain(int64_t vocab_size, int64_t branching, double concentration, uint64_t seed);

  int64_t vocab_size() const { return vocab_; }
  int64_t branching() const { return branching_; }
  // Successors and probabilities of token i (branching entries each).
  std::span<const int32_t> successors(int64_t i) const;
  std::span<const double> probabilities(int64_t i) const;
  const std::vector<double>& stationary() const { return pi_; }
  double entropy_rate() const { return entropy_rate_; }

  // Token at `position` of sequence `index` given the previous token (position 0 ignores it).
  int32_t sample(uint64_t seed, int64_t index, int64_t position, int32_t previous) const;

 private:
  int64_t vocab_, branching_;
  std::vector<int32_t> next_;       // [V, branching]
  std::vector<double> prob_;        // [V, branching]
  std::vector<double> cumulative_;  // [V, branching], for sampling
  std::vector<double> pi_, pi_cumulative_;
  double entropy_rate_ = 0.0;
};

class SyntheticSource final : public SequenceSource {
 public:
  SyntheticSource(std::shared_ptr<const MarkovChain> chain, int64_t seq_len,
                  uint64_t sampling_seed);
  int64_t seq_len() const override { return seq_len_; }
  void sequence(int64_t index, std::span<int32_t> out) const override;
  double optimal_loss() const override { return chain_->entropy_rate(); }
  std::string describe() const override;

 private:
  std::shared_ptr<const MarkovChain> chain_;
  int64_t seq_len_;
  uint64_t seed_;
};

}  // namespace tmt
