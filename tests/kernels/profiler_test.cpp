// profiler: real CPU ops recorded by name with their costs for known shapes; nested ops (the
// per-expert linears inside grouped_linear) recorded once; the attention window in the FLOPs; the
// table; a null or disabled profiler changes nothing.
#include "kernels/base/profiler.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/base/arena.h"
#include "kernels/grouped_linear.h"
#include "kernels/linear.h"
#include "kernels/rmsnorm.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

constexpr double kF32 = 4;  // bytes per element

const OpProfile* find(const std::vector<OpProfile>& ops, const std::string& name) {
  for (const OpProfile& op : ops) {
    if (op.name == name) return &op;
  }
  return nullptr;
}

// Two linear_fwd calls (the second accumulating) and an rmsnorm_fwd, f32, on fresh inputs.
struct ThreeOps {
  static constexpr int64_t kT1 = 5, kK = 7, kN1 = 3, kT2 = 4, kN2 = 6, kD = 7;
  Arena a{Device::kCpu, 1 << 16, "test"};
  Tensor x1 = a.alloc(DType::kF32, {kT1, kK}), w1 = a.alloc(DType::kF32, {kN1, kK}),
         y1 = a.alloc(DType::kF32, {kT1, kN1});
  Tensor x2 = a.alloc(DType::kF32, {kT2, kK}), w2 = a.alloc(DType::kF32, {kN2, kK}),
         y2 = a.alloc(DType::kF32, {kT2, kN2});
  Tensor h = a.alloc(DType::kF32, {kT1, kD}), g = a.alloc(DType::kF32, {kD}),
         hn = a.alloc(DType::kF32, {kT1, kD}), rstd = a.alloc(DType::kF32, {kT1});

  ThreeOps() {
    uint64_t seed = 1;
    for (const Tensor* t : {&x1, &w1, &x2, &w2, &y2, &h, &g}) test::fill_uniform(*t, seed++);
  }
  void run(const Context& ctx) {
    linear_fwd(ctx, y1, x1, w1);
    linear_fwd(ctx, y2, x2, w2, /*accumulate=*/true);
    rmsnorm_fwd(ctx, hn, rstd, h, g, 1e-5);
  }
  std::vector<std::byte> outputs() const {
    std::vector<std::byte> out;
    for (const Tensor* t : {&y1, &y2, &hn, &rstd}) {
      const auto* p = static_cast<const std::byte*>(t->data);
      out.insert(out.end(), p, p + t->nbytes());
    }
    return out;
  }
};

TEST(Profiler, RecordsCallsNamesAndCosts) {
  using S = ThreeOps;
  ThreeOps ops;
  Profiler profiler(ProfilerPeaks{1e9, 1e9});
  ops.run(Context{Device::kCpu, nullptr, &profiler});
  EXPECT_EQ(profiler.calls(), 3u);

  const std::vector<OpProfile> summary = profiler.summary();
  ASSERT_EQ(summary.size(), 2u);
  const OpProfile* linear = find(summary, "linear_fwd");
  const OpProfile* norm = find(summary, "rmsnorm_fwd");
  ASSERT_NE(linear, nullptr);
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(linear->calls, 2);
  EXPECT_EQ(norm->calls, 1);
  // linear: 2·T·N·K; x, W, y once, y twice when accumulated.
  EXPECT_DOUBLE_EQ(linear->flops, 2.0 * S::kT1 * S::kN1 * S::kK + 2.0 * S::kT2 * S::kN2 * S::kK);
  EXPECT_DOUBLE_EQ(linear->bytes,
                   kF32 * (S::kT1 * S::kK + S::kN1 * S::kK + S::kT1 * S::kN1) +
                       kF32 * (S::kT2 * S::kK + S::kN2 * S::kK + 2 * S::kT2 * S::kN2));
  // rmsnorm: 4 FLOPs an element; x, weight, y, rstd once.
  EXPECT_DOUBLE_EQ(norm->flops, 4.0 * S::kT1 * S::kD);
  EXPECT_DOUBLE_EQ(norm->bytes, kF32 * (2 * S::kT1 * S::kD + S::kD + S::kT1));

  double sum = 0;
  for (const OpProfile& op : summary) {
    EXPECT_GE(op.seconds, 0.0) << op.name;
    sum += op.seconds;
  }
  EXPECT_DOUBLE_EQ(profiler.total_seconds(), sum);
  EXPECT_GE(summary[0].seconds, summary[1].seconds);  // largest first
  EXPECT_DOUBLE_EQ(linear->floor_seconds(profiler.peaks()),
                   std::max(linear->flops, linear->bytes) / 1e9);

  const std::string ops_only = profiler.table();
  for (const char* want : {"| op ", "| linear_fwd ", "| rmsnorm_fwd ", "| all ops ", "% ops"}) {
    EXPECT_NE(ops_only.find(want), std::string::npos) << want << " not in\n" << ops_only;
  }
  EXPECT_EQ(ops_only.find("outside ops"), std::string::npos);
  const std::string with_step = profiler.table(1, sum + 1.0);
  for (const char* want : {"| outside ops ", "| step (wall) ", "% step"}) {
    EXPECT_NE(with_step.find(want), std::string::npos) << want << " not in\n" << with_step;
  }

  profiler.reset();
  EXPECT_EQ(profiler.calls(), 0u);
  EXPECT_TRUE(profiler.summary().empty());
}

TEST(Profiler, NullOrDisabledProfilerChangesNothing) {
  ThreeOps plain, disabled_run, profiled;
  plain.run(Context{});
  Profiler disabled(ProfilerPeaks{}, /*enabled=*/false);
  disabled_run.run(Context{Device::kCpu, nullptr, &disabled});
  EXPECT_EQ(disabled.calls(), 0u);
  Profiler profiler(ProfilerPeaks{});
  profiled.run(Context{Device::kCpu, nullptr, &profiler});
  EXPECT_EQ(profiler.calls(), 3u);
  EXPECT_TRUE(plain.outputs() == disabled_run.outputs());
  EXPECT_TRUE(plain.outputs() == profiled.outputs());

  disabled.set_enabled(true);
  disabled_run.run(Context{Device::kCpu, nullptr, &disabled});
  EXPECT_EQ(disabled.calls(), 3u);
}

TEST(Profiler, NestedOpsAreRecordedOnce) {
  // grouped_linear calls linear_fwd per expert with rows: one call of its own, nothing else.
  const int64_t k = 4, n = 3;
  const std::vector<int64_t> counts{3, 0, 2};
  Arena a(Device::kCpu, 1 << 16, "test");
  const Tensor x = a.alloc(DType::kF32, {5, k}), y = a.alloc(DType::kF32, {5, n});
  const Tensor w = a.alloc(DType::kF32, {3, n, k});
  test::fill_uniform(x, 1);
  test::fill_uniform(w, 2);
  Profiler profiler(ProfilerPeaks{});
  grouped_linear_fwd(Context{Device::kCpu, nullptr, &profiler}, y, x, w, counts);
  const std::vector<OpProfile> summary = profiler.summary();
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0].name, "grouped_linear_fwd");
  EXPECT_EQ(summary[0].calls, 1);
  EXPECT_DOUBLE_EQ(summary[0].flops, 2.0 * 5 * n * k);
  // x, y once, and the weights of the two experts that have rows.
  EXPECT_DOUBLE_EQ(summary[0].bytes, kF32 * (5 * k + 5 * n + 2 * n * k));
}

TEST(Profiler, AttentionFlopsCountVisiblePairs) {
  // S = 6: causal, Σ_i (i + 1) = 21 pairs a head; window 2: 1 + 2 + 2 + 2 + 2 + 2 = 11. Forward
  // 4·Dh FLOPs a pair, backward 10·Dh.
  const int64_t b = 1, s = 6, h = 2, hk = 1, dh = 4;
  Arena a(Device::kCpu, 1 << 16, "test");
  const Tensor q = a.alloc(DType::kF64, {b, s, h, dh}), out = a.alloc(DType::kF64, {b, s, h, dh});
  const Tensor k = a.alloc(DType::kF64, {b, s, hk, dh}), v = a.alloc(DType::kF64, {b, s, hk, dh});
  const Tensor lse = a.alloc(DType::kF64, {b, h, s});
  const Tensor dq = a.alloc(DType::kF64, {b, s, h, dh}), dout = a.alloc(DType::kF64, {b, s, h, dh});
  const Tensor dk = a.alloc(DType::kF64, {b, s, hk, dh}), dv = a.alloc(DType::kF64, {b, s, hk, dh});
  uint64_t seed = 1;
  for (const Tensor* t : {&q, &k, &v, &dout}) test::fill_uniform(*t, seed++);
  for (const int64_t window : {int64_t{0}, int64_t{2}}) {
    Profiler profiler(ProfilerPeaks{});
    const Context ctx{Device::kCpu, nullptr, &profiler};
    const AttentionParams p{0.5, window};
    attention_fwd(ctx, out, lse, q, k, v, p);
    attention_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, p);
    const double pairs = b * h * (window == 0 ? 21.0 : 11.0);
    const std::vector<OpProfile> summary = profiler.summary();
    const OpProfile* fwd = find(summary, "attention_fwd");
    const OpProfile* bwd = find(summary, "attention_bwd");
    ASSERT_NE(fwd, nullptr);
    ASSERT_NE(bwd, nullptr);
    EXPECT_DOUBLE_EQ(fwd->flops, 4.0 * dh * pairs) << "window " << window;
    EXPECT_DOUBLE_EQ(bwd->flops, 10.0 * dh * pairs) << "window " << window;
    // q, out: 48 elements each; k, v: 24; lse 12; f64.
    EXPECT_DOUBLE_EQ(fwd->bytes, 8.0 * (48 + 24 + 24 + 48 + 12));
    EXPECT_DOUBLE_EQ(bwd->bytes, 8.0 * (2 * (48 + 24 + 24 + 48) + 12));
  }
}

}  // namespace
}  // namespace tmt
