// moe_dispatch on CUDA against the CPU reference: permute and unpermute, forward and backward, for
// f32 (to 1e-5; the gathers exactly) and bf16 token rows (to 1e-2 against the reference run in f32
// on the bf16-rounded rows), with an expert that receives no token, local expert ranges that hold
// some, all or none of the rows, and a capacity that drops assignments. A plan made from a device
// topk_idx equals the one made from the host copy.
#include "kernels/moe_dispatch.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};

constexpr int64_t kExperts = 8;
constexpr int32_t kIdleExpert = 3;  // never chosen

// Each token picks `k` distinct experts at random, never kIdleExpert.
void fill_choices(const Tensor& idx, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> experts;
  for (int32_t e = 0; e < kExperts; ++e) {
    if (e != kIdleExpert) experts.push_back(e);
  }
  const int64_t k = idx.size(1);
  int32_t* p = idx.ptr<int32_t>();
  for (int64_t t = 0; t < idx.size(0); ++t) {
    std::shuffle(experts.begin(), experts.end(), rng);
    std::copy(experts.begin(), experts.begin() + k, p + t * k);
  }
}

struct Case {
  int64_t tokens, d, k, expert_begin, expert_end;
  std::optional<int64_t> capacity;
};

void check(DType dtype, const Case& c, uint64_t seed) {
  SCOPED_TRACE(std::string(dtype_name(dtype)) + " T=" + std::to_string(c.tokens) +
               " D=" + std::to_string(c.d) + " K=" + std::to_string(c.k) + " experts [" +
               std::to_string(c.expert_begin) + ", " + std::to_string(c.expert_end) + ")" +
               (c.capacity ? " capacity " + std::to_string(*c.capacity) : ""));
  const int64_t t = c.tokens, d = c.d, k = c.k;
  const size_t bytes = 8 * 16 * static_cast<size_t>(t * k * d + t * d + t * k) + (1 << 16);
  Arena host(Device::kCpu, bytes, "host");
  Arena dev(Device::kCuda, bytes, "device");
  const double tol = dtype == DType::kBF16 ? 1e-2 : 1e-5;

  Tensor idx = host.alloc(DType::kI32, {t, k});
  fill_choices(idx, seed);
  const DispatchPlan plan =
      make_dispatch_plan(idx, kExperts, c.expert_begin, c.expert_end, c.capacity);
  const DispatchPlan from_device = make_dispatch_plan(test::to_device(dev, idx), kExperts,
                                                      c.expert_begin, c.expert_end, c.capacity);
  EXPECT_EQ(from_device.counts, plan.counts);
  EXPECT_EQ(from_device.src_token, plan.src_token);
  EXPECT_EQ(from_device.slot, plan.slot);
  const int64_t rows = plan.rows();
  if (c.expert_begin <= kIdleExpert && kIdleExpert < c.expert_end) {
    EXPECT_EQ(plan.counts[static_cast<size_t>(kIdleExpert - c.expert_begin)], 0);
  }

  const auto rounded = [&](Shape shape, uint64_t s) {
    Tensor v = host.alloc(DType::kF32, shape);
    test::fill_normal(v, s);
    test::round_to(v, dtype);
    return v;
  };
  Tensor x = rounded({t, d}, seed + 1), dx_perm = rounded({rows, d}, seed + 2);
  Tensor y = rounded({t, d}, seed + 3), y_perm = rounded({rows, d}, seed + 4);
  Tensor dy = rounded({t, d}, seed + 5);
  Tensor w = host.alloc(DType::kF32, {t, k}), dw = host.alloc(DType::kF32, {t, k});
  test::fill_uniform(w, seed + 6, 0.1, 1.0);
  test::fill_normal(dw, seed + 7);
  const auto on_device = [&](const Tensor& v) { return test::to_device_as(dev, host, v, dtype); };
  const auto close = [&](const Tensor& got_device, const Tensor& want, double rtol,
                         const char* what) {
    test::expect_close(test::to_doubles(test::to_host(host, got_device)), test::to_doubles(want),
                       rtol, what);
  };

  Tensor x_perm = host.alloc(DType::kF32, {rows, d});
  permute_fwd(kCpu, x_perm, x, plan);
  Tensor x_perm_d = dev.alloc(dtype, {rows, d});
  test::poison(x_perm_d);
  permute_fwd(test::gpu(), x_perm_d, on_device(x), plan);
  close(x_perm_d, x_perm, 0.0, "x_perm");

  Tensor dx = host.alloc(DType::kF32, {t, d});
  permute_bwd(kCpu, dx, dx_perm, plan);
  Tensor dx_d = dev.alloc(dtype, {t, d});
  test::poison(dx_d);
  permute_bwd(test::gpu(), dx_d, on_device(dx_perm), plan);
  close(dx_d, dx, tol, "dx");

  Tensor y_d = on_device(y);
  Tensor w_d = test::to_device(dev, w);
  unpermute_fwd(kCpu, y, y_perm, w, plan);
  unpermute_fwd(test::gpu(), y_d, on_device(y_perm), w_d, plan);
  close(y_d, y, tol, "y (accumulated)");

  Tensor dy_perm = host.alloc(DType::kF32, {rows, d});
  Tensor dw_d = test::to_device(dev, dw);
  unpermute_bwd(kCpu, dy_perm, dw, dy, y_perm, w, plan);
  Tensor dy_perm_d = dev.alloc(dtype, {rows, d});
  test::poison(dy_perm_d);
  unpermute_bwd(test::gpu(), dy_perm_d, dw_d, on_device(dy), on_device(y_perm), w_d, plan);
  close(dy_perm_d, dy_perm, tol, "dy_perm");
  close(dw_d, dw, tol, "dtopk_w (accumulated)");
}

constexpr Case kCases[] = {
    {1, 1, 1, 0, kExperts, std::nullopt}, {37, 100, 2, 0, kExperts, std::nullopt},
    {37, 100, 2, 2, 6, std::nullopt},     {129, 1001, 4, 1, 4, std::nullopt},
    {300, 64, 2, 0, kExperts, 50},        {300, 64, 6, 3, 4, std::nullopt},
    {1000, 4096, 2, 0, kExperts, 300},
};

TEST(CudaMoeDispatch, MatchesReference) {
  uint64_t seed = 1;
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (const Case& c : kCases) check(dtype, c, seed += 10);
  }
}

}  // namespace
}  // namespace tmt
