// linear on CUDA (cuBLASLt) against the CPU reference (OpenBLAS): forward written and accumulated,
// backward with dx written or accumulated, dweight accumulated, either one skipped. f32 (exact
// fp32, no TF32) to 1e-5; bf16 operands against the reference run in f32 on the bf16-rounded
// operands: bf16 outputs to 1e-2, an f32 dweight to 1e-5.
#include "kernels/linear.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};

struct Dims {
  int64_t tokens, k, n;
};

void check(DType dtype, DType dweight_dtype, Dims s, uint64_t seed) {
  SCOPED_TRACE(std::string(dtype_name(dtype)) + " dweight " +
               std::string(dtype_name(dweight_dtype)) + " T=" + std::to_string(s.tokens) +
               " K=" + std::to_string(s.k) + " N=" + std::to_string(s.n));
  const size_t elems = static_cast<size_t>(s.tokens * s.k + s.n * s.k + s.tokens * s.n);
  Arena host(Device::kCpu, 8 * 8 * elems + (1 << 16), "host");
  Arena dev(Device::kCuda, 8 * 8 * elems + (1 << 16), "device");
  const double tol = dtype == DType::kBF16 ? 1e-2 : 1e-5;
  const double dweight_tol = dweight_dtype == DType::kBF16 ? 1e-2 : 1e-5;

  Tensor x = host.alloc(DType::kF32, {s.tokens, s.k});
  Tensor w = host.alloc(DType::kF32, {s.n, s.k});
  Tensor y = host.alloc(DType::kF32, {s.tokens, s.n});
  Tensor dy = host.alloc(DType::kF32, {s.tokens, s.n});
  Tensor dx = host.alloc(DType::kF32, {s.tokens, s.k});
  Tensor dw = host.alloc(DType::kF32, {s.n, s.k});
  test::fill_normal(x, seed);
  test::fill_normal(w, seed + 1, 0.1);
  test::fill_normal(y, seed + 2);
  test::fill_normal(dy, seed + 3);
  test::fill_normal(dx, seed + 4);
  test::fill_normal(dw, seed + 5);
  for (const Tensor& t : {x, w, y, dy, dx}) test::round_to(t, dtype);
  test::round_to(dw, dweight_dtype);

  Tensor xd = test::to_device_as(dev, host, x, dtype);
  Tensor wd = test::to_device_as(dev, host, w, dtype);
  Tensor yd = test::to_device_as(dev, host, y, dtype);
  Tensor dyd = test::to_device_as(dev, host, dy, dtype);
  Tensor dxd = test::to_device_as(dev, host, dx, dtype);
  Tensor dwd = test::to_device_as(dev, host, dw, dweight_dtype);
  const auto close = [&](const Tensor& got_device, const Tensor& want, double rtol,
                         const char* what) {
    test::expect_close(test::to_doubles(test::to_host(host, got_device)), test::to_doubles(want),
                       rtol, what);
  };

  // y += x W^T from a random y, then y = x W^T over a poisoned one.
  linear_fwd(kCpu, y, x, w, true);
  linear_fwd(test::gpu(), yd, xd, wd, true);
  close(yd, y, tol, "y (accumulate)");
  linear_fwd(kCpu, y, x, w, false);
  test::poison(yd);
  linear_fwd(test::gpu(), yd, xd, wd, false);
  close(yd, y, tol, "y");

  // dx += dy W and dweight += dy^T x, then dx = dy W alone, then dweight alone.
  linear_bwd(kCpu, dx, dw, dy, x, w, true);
  linear_bwd(test::gpu(), dxd, dwd, dyd, xd, wd, true);
  close(dxd, dx, tol, "dx (accumulate)");
  close(dwd, dw, dweight_tol, "dweight");
  linear_bwd(kCpu, dx, Tensor{}, dy, x, w, false);
  test::poison(dxd);
  linear_bwd(test::gpu(), dxd, Tensor{}, dyd, xd, wd, false);
  close(dxd, dx, tol, "dx");
  linear_bwd(kCpu, Tensor{}, dw, dy, x, w, false);
  linear_bwd(test::gpu(), Tensor{}, dwd, dyd, xd, wd, false);
  close(dwd, dw, dweight_tol, "dweight (twice)");
}

constexpr Dims kDims[] = {
    {1, 1, 1}, {37, 100, 1001}, {37, 1001, 100}, {256, 512, 768}, {1000, 64, 3}};

TEST(CudaLinear, F32MatchesReference) {
  uint64_t seed = 1;
  for (Dims s : kDims) check(DType::kF32, DType::kF32, s, seed += 10);
}

TEST(CudaLinear, Bf16MatchesReferenceOnRoundedOperands) {
  uint64_t seed = 1000;
  for (Dims s : kDims) {
    check(DType::kBF16, DType::kBF16, s, seed += 10);
    check(DType::kBF16, DType::kF32, s, seed += 10);
  }
}

// bf16 operands, f32 output (the router's logits): the products summed in fp32 and never rounded
// to bf16, so as close to the reference on the rounded operands as f32 itself.
TEST(CudaLinear, Bf16OperandsWriteAnF32OutputUnrounded) {
  const Dims s{300, 512, 64};
  Arena host(Device::kCpu, 8 << 20, "host");
  Arena dev(Device::kCuda, 8 << 20, "device");
  Tensor x = host.alloc(DType::kF32, {s.tokens, s.k});
  Tensor w = host.alloc(DType::kF32, {s.n, s.k});
  Tensor y = host.alloc(DType::kF32, {s.tokens, s.n});
  test::fill_normal(x, 77);
  test::fill_normal(w, 78, 0.1);
  test::round_to(x, DType::kBF16);
  test::round_to(w, DType::kBF16);
  linear_fwd(kCpu, y, x, w);
  const Tensor xd = test::to_device_as(dev, host, x, DType::kBF16);
  const Tensor wd = test::to_device_as(dev, host, w, DType::kBF16);
  const Tensor yd = dev.alloc(DType::kF32, {s.tokens, s.n});
  test::poison(yd);
  linear_fwd(test::gpu(), yd, xd, wd);
  // bf16 rounding of y alone would cost ~4e-3 relative; fp32 accumulation order ~1e-6.
  test::expect_close(test::to_doubles(test::to_host(host, yd)), test::to_doubles(y), 1e-5,
                     "f32 y from bf16 operands");
}

TEST(CudaLinear, EmptyInnerDimensionWritesZerosOrKeepsY) {
  Arena host(Device::kCpu, 1 << 16, "host");
  Arena dev(Device::kCuda, 1 << 16, "device");
  Tensor x = dev.alloc(DType::kF32, {3, 0}), w = dev.alloc(DType::kF32, {4, 0});
  Tensor yh = host.alloc(DType::kF32, {3, 4});
  test::fill_normal(yh, 7);
  Tensor y = test::to_device(dev, yh);
  linear_fwd(test::gpu(), y, x, w, true);
  EXPECT_TRUE(test::all_close(test::to_host(host, y), yh, 0.0)) << "accumulate keeps y";
  linear_fwd(test::gpu(), y, x, w, false);
  for (double v : test::to_doubles(test::to_host(host, y))) EXPECT_EQ(v, 0.0);
}

}  // namespace
}  // namespace tmt
