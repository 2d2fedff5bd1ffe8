// adamw: one element stepped by hand; three steps against a separately written PyTorch-style loop
// (bias corrections included); weight decay alone with a zero gradient; grad_scale equal to a
// pre-scaled gradient; f32 vs f64; the bf16 copy written in the same pass equal to a cast after it.
#include "kernels/adamw.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "kernels/base/arena.h"
#include "kernels/cast.h"
#include "tests/support/compare.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};
using V = std::vector<double>;

TEST(AdamW, OneElementByHand) {
  Arena a(Device::kCpu, 1 << 12, "test");
  Tensor p = a.alloc(DType::kF64, {1}), g = a.alloc(DType::kF64, {1});
  Tensor m = a.alloc(DType::kF64, {1}), v = a.alloc(DType::kF64, {1});
  p.ptr<double>()[0] = 1.0;
  g.ptr<double>()[0] = 0.5;
  adamw_step(kCpu, p, g, m, v, AdamWParams{0.1, 0.9, 0.999, 1e-8, 0.1, 1, 1.0});
  // decay: 1 - 0.1 * 0.1 = 0.99; m = 0.05, v = 0.00025; m_hat = 0.5, v_hat = 0.25;
  // update = 0.1 * 0.5 / (0.5 + 1e-8).
  EXPECT_NEAR(m.ptr<double>()[0], 0.05, 1e-16);
  EXPECT_NEAR(v.ptr<double>()[0], 0.00025, 1e-18);
  EXPECT_NEAR(p.ptr<double>()[0], 0.99 - 0.05 / (0.5 + 1e-8), 1e-15);
}

TEST(AdamW, ThreeStepsMatchHandWrittenLoop) {
  const int64_t n = 1001;
  Arena a(Device::kCpu, 1 << 18, "test");
  Tensor p = a.alloc(DType::kF64, {n}), g = a.alloc(DType::kF64, {n});
  Tensor m = a.alloc(DType::kF64, {n}), v = a.alloc(DType::kF64, {n});
  test::fill_normal(p, 1);
  V wp = test::to_doubles(p), wm(n, 0.0), wv(n, 0.0);
  AdamWParams hp{3e-2, 0.8, 0.95, 1e-6, 0.05, 1, 0.5};
  for (int64_t step = 1; step <= 3; ++step) {
    test::fill_normal(g, 10 + static_cast<uint64_t>(step), 2.0);
    hp.step = step;
    adamw_step(kCpu, p, g, m, v, hp);
    // torch.optim.AdamW, written out: decay, moments, bias-corrected step.
    const double bc1 = 1 - std::pow(0.8, step), bc2 = 1 - std::pow(0.95, step);
    for (int64_t i = 0; i < n; ++i) {
      const double gi = g.ptr<double>()[i] * 0.5;
      wp[i] *= 1 - 3e-2 * 0.05;
      wm[i] = 0.8 * wm[i] + 0.2 * gi;
      wv[i] = 0.95 * wv[i] + 0.05 * gi * gi;
      const double step_size = 3e-2 / bc1;
      const double denom = std::sqrt(wv[i]) / std::sqrt(bc2) + 1e-6;
      wp[i] -= step_size * wm[i] / denom;
    }
  }
  test::expect_close(test::to_doubles(p), wp, 1e-14, "param after 3 steps");
  test::expect_close(test::to_doubles(m), wm, 1e-14, "m after 3 steps");
  test::expect_close(test::to_doubles(v), wv, 1e-14, "v after 3 steps");
  // Not a no-op: every parameter moved (by up to lr per step).
  Tensor p_init = a.alloc(DType::kF64, {n});
  test::fill_normal(p_init, 1);
  for (int64_t i = 0; i < n; ++i) EXPECT_GT(std::fabs(wp[i] - p_init.ptr<double>()[i]), 1e-4);
}

TEST(AdamW, WeightDecayOnlyWithZeroGrad) {
  const int64_t n = 37;
  Arena a(Device::kCpu, 1 << 14, "test");
  Tensor p = a.alloc(DType::kF64, {n}), g = a.alloc(DType::kF64, {n});
  Tensor m = a.alloc(DType::kF64, {n}), v = a.alloc(DType::kF64, {n});
  test::fill_normal(p, 2);
  V want = test::to_doubles(p);
  for (int64_t step = 1; step <= 3; ++step) {
    adamw_step(kCpu, p, g, m, v, AdamWParams{0.1, 0.9, 0.999, 1e-8, 0.2, step, 1.0});
    for (double& w : want) w *= 1 - 0.1 * 0.2;
  }
  test::expect_close(test::to_doubles(p), want, 1e-15, "param after 3 decay-only steps");
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(m.ptr<double>()[i], 0.0);
    EXPECT_EQ(v.ptr<double>()[i], 0.0);
  }
}

TEST(AdamW, GradScaleEqualsPrescaledGradient) {
  const int64_t n = 100;
  Arena a(Device::kCpu, 1 << 16, "test");
  Tensor p[2], m[2], v[2];
  Tensor g = a.alloc(DType::kF64, {n}), g_scaled = a.alloc(DType::kF64, {n});
  test::fill_normal(g, 3);
  for (int64_t i = 0; i < n; ++i) g_scaled.ptr<double>()[i] = g.ptr<double>()[i] * 0.125;
  for (int k = 0; k < 2; ++k) {
    p[k] = a.alloc(DType::kF64, {n});
    m[k] = a.alloc(DType::kF64, {n});
    v[k] = a.alloc(DType::kF64, {n});
    test::fill_normal(p[k], 4);
    test::fill_normal(m[k], 5, 0.1);
    test::fill_uniform(v[k], 6, 0.0, 0.01);
  }
  adamw_step(kCpu, p[0], g, m[0], v[0], AdamWParams{1e-3, 0.9, 0.95, 1e-8, 0.1, 7, 0.125});
  adamw_step(kCpu, p[1], g_scaled, m[1], v[1], AdamWParams{1e-3, 0.9, 0.95, 1e-8, 0.1, 7, 1.0});
  EXPECT_TRUE(test::all_close(p[0], p[1], 1e-15));
  EXPECT_TRUE(test::all_close(m[0], m[1], 1e-15));
  EXPECT_TRUE(test::all_close(v[0], v[1], 1e-15));
}

TEST(AdamW, F32MatchesF64) {
  const int64_t n = 513;
  Arena a(Device::kCpu, 1 << 16, "test");
  const DType types[2] = {DType::kF32, DType::kF64};
  Tensor p[2], m[2], v[2];
  for (int k = 0; k < 2; ++k) {
    p[k] = a.alloc(types[k], {n});
    m[k] = a.alloc(types[k], {n});
    v[k] = a.alloc(types[k], {n});
    Tensor g = a.alloc(types[k], {n});
    test::fill_normal(p[k], 7);
    for (int64_t step = 1; step <= 3; ++step) {
      test::fill_normal(g, 20 + static_cast<uint64_t>(step));
      adamw_step(kCpu, p[k], g, m[k], v[k], AdamWParams{1e-2, 0.9, 0.95, 1e-8, 0.1, step, 1.0});
    }
  }
  EXPECT_TRUE(test::all_close(p[0], p[1], 1e-6));
  EXPECT_TRUE(test::all_close(m[0], m[1], 1e-6));
  EXPECT_TRUE(test::all_close(v[0], v[1], 1e-6));
}

TEST(AdamW, Bf16CopyEqualsCastOfTheNewParameters) {
  constexpr int64_t kN = 1001;
  Arena a(Device::kCpu, 1 << 16, "test");
  Tensor p = a.alloc(DType::kF32, {kN}), g = a.alloc(DType::kF32, {kN});
  Tensor m = a.alloc(DType::kF32, {kN}), v = a.alloc(DType::kF32, {kN});
  Tensor fused = a.alloc(DType::kBF16, {kN}), cast_after = a.alloc(DType::kBF16, {kN});
  test::fill_normal(p, 5);
  test::fill_normal(g, 6);
  adamw_step(kCpu, p, g, m, v, AdamWParams{.lr = 0.01, .weight_decay = 0.1, .step = 1}, fused);
  cast(kCpu, cast_after, p);
  int differ = 0, changed = 0;
  for (int64_t i = 0; i < kN; ++i) {
    differ += fused.ptr<uint16_t>()[i] != cast_after.ptr<uint16_t>()[i] ? 1 : 0;
    changed += fused.ptr<uint16_t>()[i] != 0 ? 1 : 0;
  }
  EXPECT_EQ(differ, 0) << "bf16 elements that differ from cast(param)";
  EXPECT_GT(changed, kN / 2) << "the copy was written";
}

}  // namespace
}  // namespace tmt
