// The expert dispatch in FP8 (ExpertExchange::to_experts_fp8, fp8.dispatch): the rows that arrive
// are exactly the quantized rows of what to_experts carries in f32, from every source rank and in
// the experts' order, and the all-to-all moves fp8_row_bytes(D) bytes a row: D + 4·D/128 for the
// blockwise recipe, D + D/32 for MXFP8, about half of bf16's 2·D (the bytes counted by the
// exchange, for every destination). Ragged counts, an expert no rank sends to, and with 4 ranks
// also expert tensor parallelism (each block to both etp ranks that hold it).
// ranks: 1 2 4
#include "parallel/expert_exchange.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/base/arena.h"
#include "kernels/fp8.h"

namespace tmt {
namespace {

void expect_fp8_dispatch(int64_t etp, const Fp8Recipe& recipe) {
  auto world = mpi_world();
  const int r = world->rank(), n = world->size();
  const int64_t experts = 8, d = 256;
  Communicator* group = n > 1 ? world.get() : nullptr;
  ExpertExchange exchange(group, etp, experts);
  // This rank's rows per global expert: ragged, expert 3 never chosen.
  std::vector<int64_t> counts(static_cast<size_t>(experts));
  int64_t sent = 0;
  for (int64_t e = 0; e < experts; ++e) {
    counts[static_cast<size_t>(e)] = e == 3 ? 0 : (e * 7 + r * 3) % 5 + 1;
    sent += counts[static_cast<size_t>(e)];
  }
  exchange.plan(counts);
  ASSERT_EQ(exchange.sent_rows(), sent);
  const int64_t received = exchange.received_rows();
  Arena a(Device::kCpu, 64 << 20, "t");
  const Tensor rows = a.alloc(DType::kF32, {sent, d});
  for (int64_t i = 0; i < sent * d; ++i) {
    // Magnitudes over six decades, so that tiles have subnormal elements.
    rows.ptr<float>()[i] = static_cast<float>(std::sin(0.731 * static_cast<double>(i + 977 * r)) *
                                              std::exp(-static_cast<double>(i % 97) / 7.0));
  }
  const Tensor f32_received = a.alloc(DType::kF32, {received, d});
  const Tensor f32_major = a.alloc(DType::kF32, {received, d});
  exchange.to_experts(Context{}, f32_major, f32_received, rows);
  const int64_t f32_bytes = exchange.dispatched_bytes();

  const int64_t w = fp8_row_bytes(d, recipe);
  const Tensor packed_sent = a.alloc(DType::kF8E4M3, {sent, w});
  const Tensor packed_received = a.alloc(DType::kF8E4M3, {received, w});
  const Tensor fp8_received = a.alloc(DType::kF32, {received, d});
  const Tensor fp8_major = a.alloc(DType::kF32, {received, d});
  exchange.to_experts_fp8(Context{}, fp8_major, fp8_received, rows, packed_received, packed_sent,
                          recipe);
  const Tensor want = a.alloc(DType::kF32, {received, d});
  fp8_quantize_rows(Context{}, want, f32_major, recipe);
  int64_t differ = 0, changed = 0;
  for (int64_t i = 0; i < received * d; ++i) {
    differ += fp8_major.ptr<float>()[i] != want.ptr<float>()[i];
    changed += fp8_major.ptr<float>()[i] != f32_major.ptr<float>()[i];
  }
  EXPECT_EQ(differ, 0) << "of " << received * d;
  EXPECT_GT(changed, received * d / 2) << "the rows are quantized";

  // The bytes: each block goes to the etp ranks that hold it.
  const int64_t rows_out = n > 1 ? etp * sent : 0;
  EXPECT_EQ(f32_bytes, rows_out * d * 4);
  EXPECT_EQ(exchange.dispatched_bytes(), rows_out * w);
  const int64_t tile = recipe.scaling == Fp8Scaling::kMxfp8 ? 32 : 128;
  const int64_t scale = recipe.scaling == Fp8Scaling::kMxfp8 ? 1 : 4;
  EXPECT_EQ(w, d + d / tile * scale);
  if (n > 1) {
    const double of_bf16 =
        static_cast<double>(exchange.dispatched_bytes()) / static_cast<double>(rows_out * d * 2);
    EXPECT_LT(of_bf16, 0.52);
    if (r == 0) {
      std::printf("  %d ranks, etp %ld, %s: %ld rows sent, %ld bytes in FP8 (%ld in bf16: %.3f)\n",
                  n, static_cast<long>(etp),
                  recipe.scaling == Fp8Scaling::kMxfp8 ? "mxfp8" : "blockwise",
                  static_cast<long>(rows_out), static_cast<long>(exchange.dispatched_bytes()),
                  static_cast<long>(rows_out * d * 2), of_bf16);
    }
  }
}

TEST(ExpertExchange, Fp8DispatchCarriesTheQuantizedRowsInHalfTheBytes) {
  expect_fp8_dispatch(1, Fp8Recipe{});
  expect_fp8_dispatch(1, Fp8Recipe{.pow2_scales = true});
  expect_fp8_dispatch(1, Fp8Recipe{.scaling = Fp8Scaling::kMxfp8});
}

TEST(ExpertExchange, Fp8DispatchWithExpertTensorParallelism) {
  if (mpi_world()->size() != 4) GTEST_SKIP() << "etp2 ep2 runs on 4 ranks";
  expect_fp8_dispatch(2, Fp8Recipe{});
}

}  // namespace
}  // namespace tmt
