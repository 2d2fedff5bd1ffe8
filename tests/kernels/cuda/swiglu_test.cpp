// swiglu forward and backward on CUDA against the CPU reference: f32 to 1e-5, bf16 to 1e-2 against
// the reference run in f32 on the bf16-rounded inputs.
#include "kernels/swiglu.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};

void check(DType dtype, int64_t tokens, int64_t f, uint64_t seed) {
  SCOPED_TRACE(std::string(dtype_name(dtype)) + " T=" + std::to_string(tokens) +
               " F=" + std::to_string(f));
  const size_t bytes = 8 * 8 * static_cast<size_t>(tokens * f) + (1 << 16);
  Arena host(Device::kCpu, bytes, "host");
  Arena dev(Device::kCuda, bytes, "device");
  const double tol = dtype == DType::kBF16 ? 1e-2 : 1e-5;

  Tensor gu = host.alloc(DType::kF32, {tokens, 2 * f});
  Tensor dh = host.alloc(DType::kF32, {tokens, f});
  test::fill_normal(gu, seed, 2.0);
  test::fill_normal(dh, seed + 1);
  test::round_to(gu, dtype);
  test::round_to(dh, dtype);
  Tensor gud = test::to_device_as(dev, host, gu, dtype);
  Tensor dhd = test::to_device_as(dev, host, dh, dtype);

  Tensor h = host.alloc(DType::kF32, {tokens, f});
  swiglu_fwd(kCpu, h, gu);
  Tensor hd = dev.alloc(dtype, {tokens, f});
  test::poison(hd);
  swiglu_fwd(test::gpu(), hd, gud);
  test::expect_close(test::to_doubles(test::to_host(host, hd)), test::to_doubles(h), tol, "h");

  // Separate dgu, then in place over gu (dgu may alias gu).
  Tensor dgu = host.alloc(DType::kF32, {tokens, 2 * f});
  swiglu_bwd(kCpu, dgu, dh, gu);
  Tensor dgud = dev.alloc(dtype, {tokens, 2 * f});
  test::poison(dgud);
  swiglu_bwd(test::gpu(), dgud, dhd, gud);
  test::expect_close(test::to_doubles(test::to_host(host, dgud)), test::to_doubles(dgu), tol,
                     "dgu");
  swiglu_bwd(test::gpu(), gud, dhd, gud);
  test::expect_close(test::to_doubles(test::to_host(host, gud)), test::to_doubles(dgu), tol,
                     "dgu in place");
}

TEST(CudaSwiglu, MatchesReference) {
  uint64_t seed = 1;
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    check(dtype, 1, 1, seed += 10);
    check(dtype, 37, 100, seed += 10);
    check(dtype, 129, 1001, seed += 10);
    check(dtype, 256, 14336, seed += 10);
  }
}

}  // namespace
}  // namespace tmt
