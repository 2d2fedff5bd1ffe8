// copy_columns and sum_columns on CUDA against the CPU reference, on the whole of dst (so the
// columns outside the block must come back untouched): copies exact in f32 and bf16, sums to 1e-6
// in f32 and 1e-2 in bf16 (against the reference in f32 on bf16-rounded inputs, the CUDA sum
// rounded once).
#include "kernels/slice.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};

struct Case {
  int64_t rows, dst_width, src_width;
  ColumnBlock block;
  int64_t repeat = 1, group = 1;  // copy_columns when group is 1
  bool accumulate = false;
};

void check(DType dtype, const Case& c, uint64_t seed) {
  const bool sum = c.group > 1;
  const int64_t src_rows = sum ? c.rows * c.group : c.rows / c.repeat;
  SCOPED_TRACE(std::string(dtype_name(dtype)) + (sum ? " sum" : " copy") +
               " R=" + std::to_string(c.rows) + " A=" + std::to_string(c.dst_width) +
               " B=" + std::to_string(c.src_width) + " repeat=" + std::to_string(c.repeat) +
               " group=" + std::to_string(c.group) + (c.accumulate ? " accumulate" : ""));
  const size_t bytes =
      16 * static_cast<size_t>(c.rows * c.dst_width + src_rows * c.src_width) + (1 << 16);
  Arena host(Device::kCpu, bytes, "host");
  Arena dev(Device::kCuda, bytes, "device");

  Tensor src = host.alloc(DType::kF32, {src_rows, c.src_width});
  Tensor dst = host.alloc(DType::kF32, {c.rows, c.dst_width});
  test::fill_normal(src, seed);
  test::fill_normal(dst, seed + 1);
  test::round_to(src, dtype);
  test::round_to(dst, dtype);
  Tensor srcd = test::to_device_as(dev, host, src, dtype);
  Tensor dstd = test::to_device_as(dev, host, dst, dtype);

  if (sum) {
    sum_columns(kCpu, dst, src, c.block, c.group, c.accumulate);
    sum_columns(test::gpu(), dstd, srcd, c.block, c.group, c.accumulate);
  } else {
    copy_columns(kCpu, dst, src, c.block, c.repeat, c.accumulate);
    copy_columns(test::gpu(), dstd, srcd, c.block, c.repeat, c.accumulate);
  }
  const bool exact = !sum && !c.accumulate;
  const double tol = exact ? 0.0 : (dtype == DType::kBF16 ? 1e-2 : 1e-6);
  test::expect_close(test::to_doubles(test::to_host(host, dstd)), test::to_doubles(dst), tol,
                     "dst");
}

// The moves of a latent-attention layer at Mistral Large 3's per-head sizes (rope 64, nope 128,
// v 128, 16 heads of a TP shard) beside odd widths and offsets.
TEST(CudaSlice, MatchesReference) {
  const int64_t heads = 16, rope = 64, nope = 128, v = 128, tokens = 37;
  const int64_t th = tokens * heads;
  const std::vector<Case> cases = {
      {.rows = 1, .dst_width = 1, .src_width = 1, .block = {0, 0, 1}},
      {.rows = 129, .dst_width = 77, .src_width = 50, .block = {13, 7, 41}},
      {.rows = 129, .dst_width = 77, .src_width = 50, .block = {13, 7, 41}, .accumulate = true},
      // the shared rope key broadcast to every head; the keys' nope part and the values
      {.rows = th,
       .dst_width = rope + nope,
       .src_width = rope,
       .block = {0, 0, rope},
       .repeat = heads},
      {.rows = th, .dst_width = rope + nope, .src_width = nope + v, .block = {rope, 0, nope}},
      {.rows = th, .dst_width = v, .src_width = nope + v, .block = {0, nope, v}},
      // the rope key's gradient: the sum over the heads, and a sum accumulated into a wider dst
      {.rows = tokens,
       .dst_width = rope,
       .src_width = rope + nope,
       .block = {0, 0, rope},
       .group = heads},
      {.rows = tokens,
       .dst_width = 512 + rope,
       .src_width = rope + nope,
       .block = {512, 0, rope},
       .group = heads,
       .accumulate = true},
      {.rows = 5, .dst_width = 9, .src_width = 9, .block = {2, 3, 6}, .group = 3},
      {.rows = 6,
       .dst_width = 9,
       .src_width = 9,
       .block = {2, 3, 6},
       .repeat = 3,
       .accumulate = true},
      {.rows = 8, .dst_width = 4, .src_width = 4, .block = {1, 1, 0}},  // empty block
  };
  uint64_t seed = 1;
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (const Case& c : cases) check(dtype, c, seed += 10);
  }
}

}  // namespace
}  // namespace tmt
