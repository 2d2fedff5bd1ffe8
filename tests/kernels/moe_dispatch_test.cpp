// Token dispatch: the plan's layout (dropless and with a capacity, all experts or a local range),
// exactly which assignments drop, and fp64 finite differences through permute and unpermute.
#include "kernels/moe_dispatch.h"

#include <gtest/gtest.h>

#include "kernels/base/arena.h"
#include "tests/support/compare.h"
#include "tests/support/grad_check.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};

// 5 tokens, top-2 over 4 experts.
Tensor hand_topk(Arena& a) {
  Tensor idx = a.alloc(DType::kI32, {5, 2});
  const int32_t v[] = {0, 2,  //
                       2, 0,  //
                       2, 3,  //
                       0, 2,  //
                       1, 2};
  std::copy(v, v + 10, idx.ptr<int32_t>());
  return idx;
}

TEST(DispatchPlan, DroplessGroupsByExpertThenToken) {
  Arena a(Device::kCpu, 1 << 12, "t");
  const DispatchPlan p = make_dispatch_plan(hand_topk(a), 4, 0, 4, std::nullopt);
  EXPECT_EQ(p.counts, (std::vector<int64_t>{3, 1, 5, 1}));
  // expert 0: tokens 0, 1, 3; expert 1: token 4; expert 2: tokens 0..4; expert 3: token 2
  EXPECT_EQ(p.src_token, (std::vector<int32_t>{0, 1, 3, 4, 0, 1, 2, 3, 4, 2}));
  EXPECT_EQ(p.slot, (std::vector<int32_t>{0, 4, 5, 1, 6, 9, 2, 7, 3, 8}));
}

TEST(DispatchPlan, CapacityDropsTheLaterTokens) {
  Arena a(Device::kCpu, 1 << 12, "t");
  const DispatchPlan p = make_dispatch_plan(hand_topk(a), 4, 0, 4, 2);
  EXPECT_EQ(p.counts, (std::vector<int64_t>{2, 1, 2, 1}));
  // expert 0 keeps tokens 0, 1 (token 3 drops); expert 2 keeps tokens 0, 1 (tokens 2, 3, 4 drop)
  EXPECT_EQ(p.slot, (std::vector<int32_t>{0, 3, 4, 1, -1, 5, -1, -1, 2, -1}));
  int64_t kept = 0;
  for (int32_t s : p.slot) kept += s >= 0 ? 1 : 0;
  EXPECT_EQ(kept, p.rows());
}

TEST(DispatchPlan, LocalExpertRange) {
  Arena a(Device::kCpu, 1 << 12, "t");
  DispatchPlan p;
  make_dispatch_plan(p, hand_topk(a), 4, 2, 4, std::nullopt);  // this rank holds experts 2 and 3
  EXPECT_EQ(p.counts, (std::vector<int64_t>{5, 1}));
  EXPECT_EQ(p.slot, (std::vector<int32_t>{-1, 0, 1, -1, 2, 5, -1, 3, -1, 4}));
  make_dispatch_plan(p, hand_topk(a), 4, 0, 0, std::nullopt);  // no local experts: reused, emptied
  EXPECT_EQ(p.rows(), 0);
}

TEST(Dispatch, PermuteAndUnpermuteGradients) {
  for (std::optional<int64_t> capacity : {std::optional<int64_t>(), std::optional<int64_t>(2)}) {
    Arena a(Device::kCpu, 1 << 20, "t");
    const Tensor idx = hand_topk(a);
    const DispatchPlan p = make_dispatch_plan(idx, 4, 0, 4, capacity);
    const int64_t d = 3, r = p.rows();
    Tensor x = a.alloc(DType::kF64, {5, d}), xp = a.alloc(DType::kF64, {r, d});
    Tensor w = a.alloc(DType::kF64, {5, 2}), y = a.alloc(DType::kF64, {5, d}),
           dy = a.alloc(DType::kF64, {5, d});
    Tensor dxp = a.alloc(DType::kF64, {r, d}), dx = a.alloc(DType::kF64, {5, d});
    Tensor dyp = a.alloc(DType::kF64, {r, d}), dw = a.alloc(DType::kF64, {5, 2});
    test::fill_normal(x, 1);
    test::fill_uniform(w, 2, 0.1, 1.0);
    test::fill_normal(dy, 3);
    test::fill_normal(dxp, 4);
    // loss1 = <permute(x), dxp>: d/dx through permute_bwd
    auto loss1 = [&] {
      permute_fwd(kCpu, xp, x, p);
      return test::dot(xp, dxp);
    };
    test::fill_uniform(dx, 5);
    permute_bwd(kCpu, dx, dxp, p);
    test::expect_close(test::to_doubles(dx), test::numeric_gradient(loss1, x), 1e-8, "permute dx");
    // loss2 = <y0 + unpermute(xp, w), dy> with y0 = 0: d/dxp and d/dw through unpermute_bwd
    permute_fwd(kCpu, xp, x, p);
    auto loss2 = [&] {
      std::fill(y.ptr<double>(), y.ptr<double>() + y.numel(), 0.0);
      unpermute_fwd(kCpu, y, xp, w, p);
      return test::dot(y, dy);
    };
    test::fill_uniform(dyp, 6);
    std::fill(dw.ptr<double>(), dw.ptr<double>() + dw.numel(), 0.0);
    unpermute_bwd(kCpu, dyp, dw, dy, xp, w, p);
    test::expect_close(test::to_doubles(dyp), test::numeric_gradient(loss2, xp), 1e-8,
                       "unpermute dy_perm");
    test::expect_close(test::to_doubles(dw), test::numeric_gradient(loss2, w), 1e-8,
                       "unpermute dtopk_w");
    if (capacity) {
      // token 4's second choice (expert 2) was dropped: its weight gets no gradient
      EXPECT_EQ(dw.ptr<double>()[9], 0.0);
    }
  }
}

}  // namespace
}  // namespace tmt
