// router on CUDA against the CPU reference, f32: probs, lse, topk_w and dlogits to 1e-5 by norm,
// topk_idx exactly (on logits without near-ties: well-separated values, or exact ties between equal
// logits, which both backends break to the lower index), softmax and sigmoid scores, renormalised
// or not, backward with and without the dprobs and dlse terms; the losses, their gradients and the
// statistics to 1e-9 from the same inputs; group-limited choice with an expert bias and a scaling
// factor; the sequence-wise loss's statistics and gradient.
#include "kernels/router.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};

enum class Logits { kSeparated, kTied };

// Each row: a random permutation of values 0.07 apart with noise under 0.02 (gaps >= 0.03, so no
// near-ties), or small integers (exact ties everywhere).
void fill_logits(const Tensor& t, uint64_t seed, Logits kind) {
  const int64_t rows = t.size(0), e = t.size(1);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> noise(-0.01f, 0.01f);
  std::vector<int64_t> perm(static_cast<size_t>(e));
  float* p = t.ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t j = 0; j < e; ++j) {
      p[r * e + j] =
          kind == Logits::kTied
              ? static_cast<float>(perm[static_cast<size_t>(j)] % 4) - 1.5f
              : 0.07f * static_cast<float>(perm[static_cast<size_t>(j)] - e / 2) + noise(rng);
    }
  }
}

std::vector<int32_t> ints(const Tensor& t) {
  const int32_t* p = t.ptr<const int32_t>();
  return std::vector<int32_t>(p, p + t.numel());
}

void close(Arena& host, const Tensor& got_device, const Tensor& want, double rtol,
           const char* what) {
  test::expect_close(test::to_doubles(test::to_host(host, got_device)), test::to_doubles(want),
                     rtol, what);
}

struct Case {
  int64_t tokens, experts, top_k;
  RouterScore score;
  bool renormalize;
  Logits logits;
  // DeepSeek-V3's choice: groups (1 = off), the eligible ones, routed_scaling_factor, an expert
  // bias (well separated: multiples of 0.11 around 0, so the choices keep clear gaps)
  int64_t groups = 1, kept_groups = 1;
  double scaling = 1.0;
  bool bias = false;
};

void check(const Case& c, uint64_t seed) {
  SCOPED_TRACE("T=" + std::to_string(c.tokens) + " E=" + std::to_string(c.experts) +
               " K=" + std::to_string(c.top_k) +
               (c.score == RouterScore::kSoftmax ? " softmax" : " sigmoid") +
               (c.renormalize ? " renormalised" : "") + (c.logits == Logits::kTied ? " tied" : "") +
               " groups " + std::to_string(c.kept_groups) + "/" + std::to_string(c.groups) +
               " scaling " + std::to_string(c.scaling) + (c.bias ? " bias" : ""));
  const int64_t t = c.tokens, e = c.experts, k = c.top_k;
  const size_t bytes = 64 * static_cast<size_t>(t * e + t * k + t + e) + (1 << 16);
  Arena host(Device::kCpu, bytes, "host");
  Arena dev(Device::kCuda, bytes, "device");
  const RouterParams params{k, c.score, c.renormalize, c.groups, c.kept_groups, c.scaling};

  Tensor logits = host.alloc(DType::kF32, {t, e});
  fill_logits(logits, seed, c.logits);
  Tensor probs = host.alloc(DType::kF32, {t, e});
  Tensor idx = host.alloc(DType::kI32, {t, k});
  Tensor w = host.alloc(DType::kF32, {t, k});
  Tensor lse = host.alloc(DType::kF32, {t});
  Tensor bias = c.bias ? host.alloc(DType::kF32, {e}) : Tensor{};
  for (int64_t j = 0; c.bias && j < e; ++j)
    bias.ptr<float>()[j] = 0.11f * static_cast<float>((j * 7) % 5 - 2);
  router_fwd(kCpu, probs, idx, w, lse, logits, bias, params);

  Tensor logits_d = test::to_device(dev, logits);
  Tensor probs_d = dev.alloc(DType::kF32, {t, e});
  Tensor idx_d = dev.alloc(DType::kI32, {t, k});
  Tensor w_d = dev.alloc(DType::kF32, {t, k});
  Tensor lse_d = dev.alloc(DType::kF32, {t});
  for (const Tensor& out : {probs_d, idx_d, w_d, lse_d}) test::poison(out);
  const Tensor bias_d = c.bias ? test::to_device(dev, bias) : Tensor{};
  router_fwd(test::gpu(), probs_d, idx_d, w_d, lse_d, logits_d, bias_d, params);
  EXPECT_EQ(ints(test::to_host(host, idx_d)), ints(idx)) << "topk_idx";
  close(host, probs_d, probs, 1e-5, "probs");
  close(host, w_d, w, 1e-5, "topk_w");
  close(host, lse_d, lse, 1e-5, "lse");

  // Backward from the CPU's forward outputs (so both see the same choice of experts), with every
  // term, then with the dtopk_w term alone.
  Tensor dw = host.alloc(DType::kF32, {t, k});
  Tensor dprobs = host.alloc(DType::kF32, {t, e});
  Tensor dlse = host.alloc(DType::kF32, {t});
  test::fill_normal(dw, seed + 1);
  test::fill_normal(dprobs, seed + 2, 0.1);
  test::fill_normal(dlse, seed + 3);
  Tensor dlogits = host.alloc(DType::kF32, {t, e});
  Tensor dlogits_d = dev.alloc(DType::kF32, {t, e});
  Tensor probs_c = test::to_device(dev, probs), idx_c = test::to_device(dev, idx);
  Tensor w_c = test::to_device(dev, w), dw_d = test::to_device(dev, dw);
  Tensor dprobs_d = test::to_device(dev, dprobs), dlse_d = test::to_device(dev, dlse);
  router_bwd(kCpu, dlogits, dw, dprobs, dlse, probs, idx, w, logits, params);
  test::poison(dlogits_d);
  router_bwd(test::gpu(), dlogits_d, dw_d, dprobs_d, dlse_d, probs_c, idx_c, w_c, logits_d, params);
  close(host, dlogits_d, dlogits, 1e-5, "dlogits");
  router_bwd(kCpu, dlogits, dw, Tensor{}, Tensor{}, probs, idx, w, logits, params);
  test::poison(dlogits_d);
  router_bwd(test::gpu(), dlogits_d, dw_d, Tensor{}, Tensor{}, probs_c, idx_c, w_c, logits_d,
             params);
  close(host, dlogits_d, dlogits, 1e-5, "dlogits (dtopk_w only)");

  // Losses and statistics, from the CPU's probs, topk_idx and lse on both sides.
  Tensor lse_c = test::to_device(dev, lse);
  const double coeff = 0.01, weight = 0.37;
  const double aux = load_balancing_loss(kCpu, dprobs, probs, idx, coeff, weight);
  test::poison(dprobs_d);
  const double aux_d = load_balancing_loss(test::gpu(), dprobs_d, probs_c, idx_c, coeff, weight);
  EXPECT_NEAR(aux_d, aux, 1e-9 * std::abs(aux)) << "load_balancing_loss";
  close(host, dprobs_d, dprobs, 1e-6, "dprobs");
  const double z = z_loss(kCpu, dlse, lse, coeff, weight);
  test::poison(dlse_d);
  const double z_d = z_loss(test::gpu(), dlse_d, lse_c, coeff, weight);
  EXPECT_NEAR(z_d, z, 1e-9 * std::abs(z)) << "z_loss";
  close(host, dlse_d, dlse, 1e-6, "dlse");

  Tensor stats = host.alloc(DType::kF64, {2 * e + 1});
  Tensor stats_d = dev.alloc(DType::kF64, {2 * e + 1});
  router_stats(kCpu, stats, probs, idx, lse);
  test::poison(stats_d);
  router_stats(test::gpu(), stats_d, probs_c, idx_c, lse_c);
  close(host, stats_d, stats, 1e-12, "stats");
  // As one rank's share of a micro-batch three times larger.
  const int64_t whole = 3 * t;
  const double aux_s = load_balancing_from_stats(kCpu, dprobs, stats, whole, k, coeff, weight);
  test::poison(dprobs_d);
  const double aux_sd =
      load_balancing_from_stats(test::gpu(), dprobs_d, stats_d, whole, k, coeff, weight);
  EXPECT_NEAR(aux_sd, aux_s, 1e-9 * std::abs(aux_s)) << "load_balancing_from_stats";
  close(host, dprobs_d, dprobs, 1e-6, "dprobs from stats");
  const double z_s = z_loss_from_stats(kCpu, dlse, lse, stats, whole, coeff, weight);
  test::poison(dlse_d);
  const double z_sd = z_loss_from_stats(test::gpu(), dlse_d, lse_c, stats_d, whole, coeff, weight);
  EXPECT_NEAR(z_sd, z_s, 1e-9 * std::abs(z_s)) << "z_loss_from_stats";
  close(host, dlse_d, dlse, 1e-6, "dlse from stats");
  // The same with the statistics also on the host: the values from them, the gradients alike.
  const double* on_host = stats.ptr<const double>();
  test::poison(dprobs_d);
  EXPECT_NEAR(
      load_balancing_from_stats(test::gpu(), dprobs_d, stats_d, whole, k, coeff, weight, on_host),
      aux_s, 1e-9 * std::abs(aux_s))
      << "load_balancing_from_stats, host stats";
  close(host, dprobs_d, dprobs, 1e-6, "dprobs from stats (host stats)");
  test::poison(dlse_d);
  EXPECT_NEAR(z_loss_from_stats(test::gpu(), dlse_d, lse_c, stats_d, whole, coeff, weight, on_host),
              z_s, 1e-9 * std::abs(z_s))
      << "z_loss_from_stats, host stats";
  close(host, dlse_d, dlse, 1e-6, "dlse from stats (host stats)");

  // The sequence-wise loss: the rows as tokens [5, 5 + t) of sequences of 4 (ragged at both
  // ends), its statistics and its gradient added onto dprobs.
  const int64_t seq = 4, first = 5, batch = (first + t + seq - 1) / seq;
  Tensor seq_stats = host.alloc(DType::kF64, {batch, 2 * e});
  Tensor seq_stats_d = dev.alloc(DType::kF64, {batch, 2 * e});
  seq_aux_stats(kCpu, seq_stats, probs, idx, first, seq);
  test::poison(seq_stats_d);
  seq_aux_stats(test::gpu(), seq_stats_d, probs_c, idx_c, first, seq);
  close(host, seq_stats_d, seq_stats, 1e-12, "seq_aux_stats");
  test::fill_normal(dprobs, seed + 4, 0.1);
  Tensor dprobs_seq_d = test::to_device(dev, dprobs);
  const double seq_aux =
      seq_aux_from_stats(kCpu, dprobs, probs, seq_stats, first, seq, seq, k, 0.3, weight);
  const double seq_aux_d = seq_aux_from_stats(test::gpu(), dprobs_seq_d, probs_c, seq_stats_d,
                                              first, seq, seq, k, 0.3, weight);
  EXPECT_NEAR(seq_aux_d, seq_aux, 1e-9 * std::abs(seq_aux)) << "seq_aux_from_stats";
  close(host, dprobs_seq_d, dprobs, 1e-6, "dprobs += seq aux");
}

TEST(CudaRouter, MatchesReference) {
  uint64_t seed = 1;
  for (RouterScore score : {RouterScore::kSoftmax, RouterScore::kSigmoid}) {
    for (bool renormalize : {true, false}) {
      for (Logits logits : {Logits::kSeparated, Logits::kTied}) {
        check({1, 8, 2, score, renormalize, logits}, seed += 10);
        check({37, 8, 2, score, renormalize, logits}, seed += 10);
        check({300, 64, 6, score, renormalize, logits}, seed += 10);
        check({1001, 160, 8, score, renormalize, logits}, seed += 10);
        check({129, 7, 7, score, renormalize, logits}, seed += 10);
        // DeepSeek-V3 shapes: 4 of 8 groups, top-8 of 64, scaled, with a bias; 2 of 3 groups
        check({300, 64, 8, score, renormalize, logits, 8, 4, 2.5, true}, seed += 10);
        check({37, 12, 3, score, renormalize, logits, 3, 2, 1.0, false}, seed += 10);
      }
    }
  }
}

}  // namespace
}  // namespace tmt
