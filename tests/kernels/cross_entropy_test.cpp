// cross_entropy: hand-computed rows (uniform, probabilities 0.1..0.4, a logit of 1000, an ignored
// target); fp64 finite differences of dlogits with ignored targets; in place over the logits; the
// vocab-parallel pieces on two shards against the fused op; f32 vs f64.
#include "kernels/cross_entropy.h"

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

// Columns [begin, end) of a [T, V] f64 tensor, as a new [T, end - begin] tensor.
Tensor columns(Arena& a, const Tensor& x, int64_t begin, int64_t end) {
  Tensor out = a.alloc(x.dtype, {x.size(0), end - begin});
  for (int64_t t = 0; t < x.size(0); ++t) {
    for (int64_t v = begin; v < end; ++v) {
      out.ptr<double>()[t * (end - begin) + v - begin] = x.ptr<double>()[t * x.size(1) + v];
    }
  }
  return out;
}

TEST(CrossEntropy, ByHand) {
  Arena a(Device::kCpu, 1 << 16, "test");
  const double l2 = std::log(2.0), l3 = std::log(3.0), l4 = std::log(4.0);
  Tensor logits = a.alloc(DType::kF64, {4, 4}), dlogits = a.alloc(DType::kF64, {4, 4});
  test::set_values(logits, {0, 0, 0, 0,     // uniform, target 2: loss ln 4
                            0, l2, l3, l4,  // probabilities 0.1 .. 0.4, target 3: loss -ln 0.4
                            1000, 0, 0, 0,  // target 0: loss log(1 + 3 e^-1000) = 0, no overflow
                            5, 6, 7, 8});   // ignored
  Tensor targets = a.alloc(DType::kI32, {4});
  test::set_values(targets, {2, 3, 0, -100});
  Tensor losses = a.alloc(DType::kF64, {4});
  test::fill_uniform(losses, 1);
  test::fill_uniform(dlogits, 2);
  cross_entropy(kCpu, losses, dlogits, logits, targets, 0.5);
  EXPECT_TRUE(test::all_close(test::to_doubles(losses), V{l4, -std::log(0.4), 0, 0}, 1e-15));
  const V want = {0.125, 0.125, -0.375, 0.125,  //
                  0.05,  0.1,   0.15,   -0.3,   //
                  0,     0,     0,      0,      //
                  0,     0,     0,      0};
  const V got = test::to_doubles(dlogits);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-15) << i;

  // Losses only.
  Tensor losses2 = a.alloc(DType::kF32, {4});
  cross_entropy(kCpu, losses2, Tensor{}, logits, targets, 1.0);
  EXPECT_TRUE(test::all_close(losses2, losses, 1e-7));
}

TEST(CrossEntropy, GradientCheckF64WithIgnoredTargets) {
  const int64_t n_tokens = 7, n_vocab = 12;
  const double grad_scale = 1.0 / 5.0;  // e.g. 1 / (number of counted tokens)
  Arena a(Device::kCpu, 1 << 16, "test");
  Tensor logits = a.alloc(DType::kF64, {n_tokens, n_vocab});
  Tensor dlogits = a.alloc(DType::kF64, {n_tokens, n_vocab});
  Tensor losses = a.alloc(DType::kF64, {n_tokens}), targets = a.alloc(DType::kI32, {n_tokens});
  test::fill_normal(logits, 1, 3.0);
  test::fill_normal(dlogits, 2);
  test::fill_uniform(targets, 3, 0, static_cast<double>(n_vocab));
  targets.ptr<int32_t>()[1] = -1;
  targets.ptr<int32_t>()[4] = -100;
  auto loss = [&] {
    cross_entropy(kCpu, losses, Tensor{}, logits, targets, 1.0);
    double s = 0;
    for (int64_t t = 0; t < n_tokens; ++t) s += losses.ptr<double>()[t];
    return grad_scale * s;
  };
  const V numeric = test::numeric_gradient(loss, logits);
  cross_entropy(kCpu, losses, dlogits, logits, targets, grad_scale);
  test::expect_close(test::to_doubles(dlogits), numeric, 1e-8, "dlogits vs finite differences");
  for (int64_t v = 0; v < n_vocab; ++v) {
    EXPECT_EQ(dlogits.ptr<double>()[1 * n_vocab + v], 0.0);
    EXPECT_EQ(dlogits.ptr<double>()[4 * n_vocab + v], 0.0);
  }
  EXPECT_EQ(losses.ptr<double>()[1], 0.0);
  EXPECT_EQ(losses.ptr<double>()[4], 0.0);

  // In place: the gradient overwrites the logits, the losses are those of the original logits.
  Tensor losses_inplace = a.alloc(DType::kF64, {n_tokens});
  cross_entropy(kCpu, losses_inplace, logits, logits, targets, grad_scale);
  EXPECT_TRUE(test::all_close(logits, dlogits, 0.0));
  EXPECT_TRUE(test::all_close(losses_inplace, losses, 0.0));
}

TEST(CrossEntropy, VocabParallelPiecesMatchFused) {
  const int64_t n_tokens = 9, n_vocab = 13, split = 5;
  const double grad_scale = 0.3;
  Arena a(Device::kCpu, 1 << 18, "test");
  Tensor logits = a.alloc(DType::kF64, {n_tokens, n_vocab});
  Tensor targets = a.alloc(DType::kI32, {n_tokens});
  test::fill_normal(logits, 4, 4.0);
  test::fill_uniform(targets, 5, 0, static_cast<double>(n_vocab));
  targets.ptr<int32_t>()[2] = -1;
  targets.ptr<int32_t>()[3] = 0;            // first column of shard 0
  targets.ptr<int32_t>()[5] = split;        // first column of shard 1
  targets.ptr<int32_t>()[6] = n_vocab - 1;  // last column of shard 1
  Tensor want_loss = a.alloc(DType::kF64, {n_tokens});
  Tensor want_grad = a.alloc(DType::kF64, {n_tokens, n_vocab});
  cross_entropy(kCpu, want_loss, want_grad, logits, targets, grad_scale);

  const int64_t starts[2] = {0, split}, ends[2] = {split, n_vocab};
  Tensor shard[2];
  for (int r = 0; r < 2; ++r) shard[r] = columns(a, logits, starts[r], ends[r]);
  // The all-reduces, done by hand over the two shards.
  Tensor row_max = a.alloc(DType::kF64, {n_tokens}), sum_exp = a.alloc(DType::kF64, {n_tokens});
  Tensor target_logit = a.alloc(DType::kF64, {n_tokens});
  Tensor part[2];
  for (int r = 0; r < 2; ++r) {
    part[r] = a.alloc(DType::kF64, {n_tokens});
    cross_entropy_row_max(kCpu, part[r], shard[r]);
  }
  for (int64_t t = 0; t < n_tokens; ++t) {
    row_max.ptr<double>()[t] = std::max(part[0].ptr<double>()[t], part[1].ptr<double>()[t]);
  }
  for (int r = 0; r < 2; ++r) cross_entropy_sum_exp(kCpu, part[r], shard[r], row_max);
  for (int64_t t = 0; t < n_tokens; ++t) {
    sum_exp.ptr<double>()[t] = part[0].ptr<double>()[t] + part[1].ptr<double>()[t];
  }
  for (int r = 0; r < 2; ++r) {
    cross_entropy_target_logit(kCpu, part[r], shard[r], targets, starts[r]);
  }
  for (int64_t t = 0; t < n_tokens; ++t) {
    target_logit.ptr<double>()[t] = part[0].ptr<double>()[t] + part[1].ptr<double>()[t];
  }
  Tensor losses = a.alloc(DType::kF64, {n_tokens});
  cross_entropy_loss(kCpu, losses, row_max, sum_exp, target_logit, targets);
  test::expect_close(test::to_doubles(losses), test::to_doubles(want_loss), 1e-13,
                     "vocab-parallel losses vs fused");
  for (int r = 0; r < 2; ++r) {
    // In place, as the fused op allows.
    cross_entropy_grad(kCpu, shard[r], shard[r], targets, row_max, sum_exp, starts[r], grad_scale);
    test::expect_close(test::to_doubles(shard[r]),
                       test::to_doubles(columns(a, want_grad, starts[r], ends[r])), 1e-13,
                       "vocab-parallel dlogits shard vs fused");
  }
}

TEST(CrossEntropy, F32MatchesF64) {
  const int64_t n_tokens = 17, n_vocab = 301;
  Arena a(Device::kCpu, 1 << 20, "test");
  Tensor targets = a.alloc(DType::kI32, {n_tokens});
  test::fill_uniform(targets, 6, -3, static_cast<double>(n_vocab));
  const DType types[2] = {DType::kF32, DType::kF64};
  Tensor losses[2], dlogits[2];
  for (int k = 0; k < 2; ++k) {
    Tensor logits = a.alloc(types[k], {n_tokens, n_vocab});
    test::fill_normal(logits, 7, 5.0);
    losses[k] = a.alloc(types[k], {n_tokens});
    dlogits[k] = a.alloc(types[k], {n_tokens, n_vocab});
    cross_entropy(kCpu, losses[k], dlogits[k], logits, targets, 1.0 / n_tokens);
  }
  EXPECT_TRUE(test::all_close(losses[0], losses[1], 1e-6));
  EXPECT_TRUE(test::all_close(dlogits[0], dlogits[1], 1e-5));
}

TEST(CrossEntropyDeathTest, TargetBeyondVocabIsFatal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Arena a(Device::kCpu, 1 << 12, "test");
  Tensor logits = a.alloc(DType::kF32, {2, 5}), losses = a.alloc(DType::kF32, {2});
  Tensor targets = a.alloc(DType::kI32, {2});
  targets.ptr<int32_t>()[1] = 5;
  EXPECT_EXIT(cross_entropy(kCpu, losses, logits, logits, targets, 1.0),
              ::testing::ExitedWithCode(1), "target 5 of token 1 >= V = 5");
}

}  // namespace
}  // namespace tmt
