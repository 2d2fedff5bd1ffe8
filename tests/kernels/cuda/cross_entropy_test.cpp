// cross_entropy on CUDA against the CPU reference: the fused op (separate and in-place gradient,
// losses only; f32|f64 losses; ignored targets) and the vocab-parallel pieces over ragged shards,
// combined on the host and checked against the fused reference on the whole vocabulary. Logits
// f32 to 1e-5; bf16 logits against the reference run in f32 on the bf16-rounded logits, losses to
// 1e-5 (they are fp32 sums) and gradients to 1e-2.
#include "kernels/cross_entropy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};

size_t arena_bytes(int64_t tokens, int64_t vocab) {
  return 8 * 8 * static_cast<size_t>(tokens * vocab + 8 * tokens) + (1 << 16);
}

// Targets in [0, V), with every fifth ignored (< 0).
Tensor make_targets(Arena& host, int64_t tokens, int64_t vocab, uint64_t seed) {
  Tensor t = host.alloc(DType::kI32, {tokens});
  test::fill_uniform(t, seed, 0.0, static_cast<double>(vocab));
  for (int64_t i = 0; i < tokens; i += 5) store_element(DType::kI32, t.data, i, i % 2 ? -1 : -100);
  return t;
}

void check_fused(DType dtype, DType loss_dtype, int64_t tokens, int64_t vocab, uint64_t seed) {
  SCOPED_TRACE(std::string(dtype_name(dtype)) + " losses " + std::string(dtype_name(loss_dtype)) +
               " T=" + std::to_string(tokens) + " V=" + std::to_string(vocab));
  Arena host(Device::kCpu, arena_bytes(tokens, vocab), "host");
  Arena dev(Device::kCuda, arena_bytes(tokens, vocab), "device");
  const double grad_tol = dtype == DType::kBF16 ? 1e-2 : 1e-5;
  const double grad_scale = 1.0 / static_cast<double>(tokens);

  Tensor logits = host.alloc(DType::kF32, {tokens, vocab});
  test::fill_normal(logits, seed, 3.0);
  test::round_to(logits, dtype);
  Tensor targets = make_targets(host, tokens, vocab, seed + 1);
  Tensor losses = host.alloc(loss_dtype, {tokens});
  Tensor dlogits = host.alloc(DType::kF32, {tokens, vocab});
  cross_entropy(kCpu, losses, dlogits, logits, targets, grad_scale);

  Tensor logitsd = test::to_device_as(dev, host, logits, dtype);
  Tensor targetsd = test::to_device(dev, targets);
  Tensor lossesd = dev.alloc(loss_dtype, {tokens});
  Tensor dlogitsd = dev.alloc(dtype, {tokens, vocab});

  // Losses only.
  test::poison(lossesd);
  cross_entropy(test::gpu(), lossesd, Tensor{}, logitsd, targetsd, grad_scale);
  test::expect_close(test::to_doubles(test::to_host(host, lossesd)), test::to_doubles(losses), 1e-5,
                     "losses (no gradient)");
  // A separate gradient.
  test::poison(lossesd);
  test::poison(dlogitsd);
  cross_entropy(test::gpu(), lossesd, dlogitsd, logitsd, targetsd, grad_scale);
  test::expect_close(test::to_doubles(test::to_host(host, lossesd)), test::to_doubles(losses), 1e-5,
                     "losses");
  test::expect_close(test::to_doubles(test::to_host(host, dlogitsd)), test::to_doubles(dlogits),
                     grad_tol, "dlogits");
  // In place over the logits.
  test::poison(lossesd);
  cross_entropy(test::gpu(), lossesd, logitsd, logitsd, targetsd, grad_scale);
  test::expect_close(test::to_doubles(test::to_host(host, lossesd)), test::to_doubles(losses), 1e-5,
                     "losses (in place)");
  test::expect_close(test::to_doubles(test::to_host(host, logitsd)), test::to_doubles(dlogits),
                     grad_tol, "dlogits (in place)");
}

TEST(CudaCrossEntropy, FusedMatchesReference) {
  uint64_t seed = 1;
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (DType loss_dtype : {DType::kF32, DType::kF64}) {
      check_fused(dtype, loss_dtype, 1, 2, seed += 10);
      check_fused(dtype, loss_dtype, 37, 1001, seed += 10);
      check_fused(dtype, loss_dtype, 64, 32000, seed += 10);
    }
    check_fused(dtype, DType::kF32, 9, 131073, seed += 10);
  }
}

// Columns [begin, end) of a host [T, V] tensor, as a new [T, end - begin] tensor of `dtype`.
Tensor columns(Arena& host, const Tensor& m, int64_t begin, int64_t end, DType dtype) {
  const int64_t tokens = m.size(0), vocab = m.size(1), width = end - begin;
  Tensor out = host.alloc(dtype, {tokens, width});
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t v = 0; v < width; ++v) {
      const double x = load_element(m.dtype, m.data, static_cast<size_t>(t * vocab + begin + v));
      store_element(dtype, out.data, static_cast<size_t>(t * width + v), x);
    }
  }
  return out;
}

void check_vocab_parallel(DType dtype, int64_t tokens, std::vector<int64_t> shard_widths,
                          uint64_t seed) {
  int64_t vocab = 0;
  for (int64_t w : shard_widths) vocab += w;
  SCOPED_TRACE(std::string(dtype_name(dtype)) + " T=" + std::to_string(tokens) +
               " V=" + std::to_string(vocab) + " shards=" + std::to_string(shard_widths.size()));
  Arena host(Device::kCpu, 4 * arena_bytes(tokens, vocab), "host");
  Arena dev(Device::kCuda, 4 * arena_bytes(tokens, vocab), "device");
  const double grad_tol = dtype == DType::kBF16 ? 1e-2 : 1e-5;
  const double grad_scale = 0.25;

  Tensor logits = host.alloc(DType::kF32, {tokens, vocab});
  test::fill_normal(logits, seed, 3.0);
  test::round_to(logits, dtype);
  Tensor targets = make_targets(host, tokens, vocab, seed + 1);
  Tensor want_losses = host.alloc(DType::kF64, {tokens});
  Tensor want_dlogits = host.alloc(DType::kF32, {tokens, vocab});
  cross_entropy(kCpu, want_losses, want_dlogits, logits, targets, grad_scale);

  // Each shard's logits on the device; the statistics combined on the host as the all-reduces
  // would (max, sum, sum), in f64.
  Tensor targetsd = test::to_device(dev, targets);
  std::vector<Tensor> shards;
  std::vector<double> row_max(static_cast<size_t>(tokens), -INFINITY);
  std::vector<double> sum_exp(static_cast<size_t>(tokens), 0.0);
  std::vector<double> target_logit(static_cast<size_t>(tokens), 0.0);
  Tensor stat = dev.alloc(DType::kF64, {tokens});
  int64_t start = 0;
  for (int64_t w : shard_widths) {
    shards.push_back(test::to_device(dev, columns(host, logits, start, start + w, dtype)));
    test::poison(stat);
    cross_entropy_row_max(test::gpu(), stat, shards.back());
    const auto m = test::to_doubles(test::to_host(host, stat));
    for (size_t t = 0; t < m.size(); ++t) row_max[t] = std::max(row_max[t], m[t]);
    test::poison(stat);
    cross_entropy_target_logit(test::gpu(), stat, shards.back(), targetsd, start);
    const auto x = test::to_doubles(test::to_host(host, stat));
    for (size_t t = 0; t < x.size(); ++t) target_logit[t] += x[t];
    start += w;
  }
  Tensor row_maxd = dev.alloc(DType::kF64, {tokens});
  Tensor sum_expd = dev.alloc(DType::kF64, {tokens});
  Tensor target_logitd = dev.alloc(DType::kF64, {tokens});
  Tensor h = host.alloc(DType::kF64, {tokens});
  test::set_values(h, row_max);
  cuda::copy(row_maxd.data, h.data, h.nbytes());
  for (const Tensor& shard : shards) {
    test::poison(stat);
    cross_entropy_sum_exp(test::gpu(), stat, shard, row_maxd);
    const auto s = test::to_doubles(test::to_host(host, stat));
    for (size_t t = 0; t < s.size(); ++t) sum_exp[t] += s[t];
  }
  test::set_values(h, sum_exp);
  cuda::copy(sum_expd.data, h.data, h.nbytes());
  test::set_values(h, target_logit);
  cuda::copy(target_logitd.data, h.data, h.nbytes());

  Tensor lossesd = dev.alloc(DType::kF32, {tokens});
  test::poison(lossesd);
  cross_entropy_loss(test::gpu(), lossesd, row_maxd, sum_expd, target_logitd, targetsd);
  test::expect_close(test::to_doubles(test::to_host(host, lossesd)), test::to_doubles(want_losses),
                     1e-5, "losses");

  // Each shard's gradient, in place over its logits, against the reference's columns.
  start = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    const int64_t w = shard_widths[i];
    cross_entropy_grad(test::gpu(), shards[i], shards[i], targetsd, row_maxd, sum_expd, start,
                       grad_scale);
    Tensor want = columns(host, want_dlogits, start, start + w, DType::kF32);
    test::expect_close(test::to_doubles(test::to_host(host, shards[i])), test::to_doubles(want),
                       grad_tol, ("dlogits shard " + std::to_string(i)).c_str());
    start += w;
  }
}

TEST(CudaCrossEntropy, VocabParallelPiecesMatchFusedReference) {
  uint64_t seed = 500;
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    check_vocab_parallel(dtype, 37, {400, 301, 300}, seed += 10);
    check_vocab_parallel(dtype, 20, {16000, 16000}, seed += 10);
    check_vocab_parallel(dtype, 3, {5}, seed += 10);
  }
}

TEST(CudaCrossEntropy, EmptyShardHasNoMaxAndNoSum) {
  Arena dev(Device::kCuda, 1 << 16, "device");
  Arena host(Device::kCpu, 1 << 16, "host");
  Tensor logits = dev.alloc(DType::kF32, {4, 0});
  Tensor m = dev.alloc(DType::kF64, {4}), s = dev.alloc(DType::kF64, {4});
  test::poison(m);
  test::poison(s);
  cross_entropy_row_max(test::gpu(), m, logits);
  cross_entropy_sum_exp(test::gpu(), s, logits, m);
  for (double v : test::to_doubles(test::to_host(host, m))) EXPECT_EQ(v, -INFINITY);
  for (double v : test::to_doubles(test::to_host(host, s))) EXPECT_EQ(v, 0.0);
}

}  // namespace
}  // namespace tmt
