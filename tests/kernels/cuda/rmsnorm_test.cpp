// rmsnorm forward and backward on CUDA against the CPU reference: f32 to 1e-5 (rstd stored as f32
// and as f64), bf16 to 1e-2 against the reference run in f32 on the bf16-rounded inputs, with
// dweight in bf16 or in f32 (fp32 gradient accumulation, to 1e-3: only its inputs are rounded).
#include "kernels/rmsnorm.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};

struct Shape2 {
  int64_t tokens, d;
};
constexpr Shape2 kShapes[] = {{1, 8}, {37, 100}, {64, 1001}, {300, 4096}};

void check(DType dtype, DType rstd_dtype, Shape2 s, uint64_t seed, DType grad_dtype) {
  const std::string what = std::string(dtype_name(dtype)) + " rstd " +
                           std::string(dtype_name(rstd_dtype)) + " dweight " +
                           std::string(dtype_name(grad_dtype)) + " T=" + std::to_string(s.tokens) +
                           " D=" + std::to_string(s.d);
  SCOPED_TRACE(what);
  const size_t bytes = 16 * 8 * static_cast<size_t>(s.tokens * s.d + s.tokens + s.d) + (1 << 16);
  Arena host(Device::kCpu, bytes, "host");
  Arena dev(Device::kCuda, bytes, "device");
  const double tol = dtype == DType::kBF16 ? 1e-2 : 1e-5;

  // Inputs in f32, rounded to what the kernel under test will see.
  Tensor x = host.alloc(DType::kF32, {s.tokens, s.d});
  Tensor w = host.alloc(DType::kF32, {s.d});
  Tensor dy = host.alloc(DType::kF32, {s.tokens, s.d});
  Tensor dw = host.alloc(DType::kF32, {s.d});
  test::fill_normal(x, seed, 1.5);
  test::fill_uniform(w, seed + 1, 0.5, 1.5);
  test::fill_normal(dy, seed + 2);
  test::fill_normal(dw, seed + 3);  // dweight accumulates: start from something
  for (const Tensor& t : {x, w, dy}) test::round_to(t, dtype);
  test::round_to(dw, grad_dtype);

  Tensor xd = test::to_device_as(dev, host, x, dtype);
  Tensor wd = test::to_device_as(dev, host, w, dtype);
  Tensor dyd = test::to_device_as(dev, host, dy, dtype);
  Tensor dwd = test::to_device_as(dev, host, dw, grad_dtype);

  // Forward.
  Tensor y = host.alloc(DType::kF32, {s.tokens, s.d});
  Tensor rstd = host.alloc(rstd_dtype, {s.tokens});
  rmsnorm_fwd(kCpu, y, rstd, x, w, 1e-5);
  Tensor yd = dev.alloc(dtype, {s.tokens, s.d});
  Tensor rstdd = dev.alloc(rstd_dtype, {s.tokens});
  test::poison(yd);
  test::poison(rstdd);
  rmsnorm_fwd(test::gpu(), yd, rstdd, xd, wd, 1e-5);
  test::expect_close(test::to_doubles(test::to_host(host, yd)), test::to_doubles(y), tol, "y");
  test::expect_close(test::to_doubles(test::to_host(host, rstdd)), test::to_doubles(rstd), 1e-5,
                     "rstd");

  // Backward, dx in place over dy on the device (dx may alias dy).
  Tensor dx = host.alloc(DType::kF32, {s.tokens, s.d});
  rmsnorm_bwd(kCpu, dx, dw, dy, x, w, rstd);
  rmsnorm_bwd(test::gpu(), dyd, dwd, dyd, xd, wd, rstdd);
  test::expect_close(test::to_doubles(test::to_host(host, dyd)), test::to_doubles(dx), tol, "dx");
  const double dw_tol = grad_dtype == DType::kF32 && dtype == DType::kBF16 ? 1e-3 : tol;
  test::expect_close(test::to_doubles(test::to_host(host, dwd)), test::to_doubles(dw), dw_tol,
                     "dweight");
}

TEST(CudaRmsnorm, F32MatchesReference) {
  uint64_t seed = 1;
  for (Shape2 s : kShapes) {
    check(DType::kF32, DType::kF32, s, seed += 10, DType::kF32);
    check(DType::kF32, DType::kF64, s, seed += 10, DType::kF32);
  }
}

TEST(CudaRmsnorm, Bf16MatchesReferenceOnRoundedInputs) {
  uint64_t seed = 1000;
  for (Shape2 s : kShapes) check(DType::kBF16, DType::kF32, s, seed += 10, DType::kBF16);
}

TEST(CudaRmsnorm, Bf16WithF32DweightMatchesReference) {
  uint64_t seed = 2000;
  for (Shape2 s : kShapes) check(DType::kBF16, DType::kF32, s, seed += 10, DType::kF32);
}

}  // namespace
}  // namespace tmt
