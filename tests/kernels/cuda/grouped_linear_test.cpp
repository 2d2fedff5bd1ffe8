// grouped_linear on CUDA through whichever path TMT_GROUPED_GEMM picks (ctest runs it once for each
// of cutlass, cublas, loop; kernels/grouped_linear.h) against the CPU reference: ragged groups
// including empty ones, whose dweight must stay exactly as it was. f32 (exact fp32, no TF32, always
// the loop) to 1e-5; bf16 operands against the reference run in f32 on the rounded operands, bf16
// outputs to 1e-2 and an f32 dweight to 1e-5. bf16 with N = 1001 (rows not 16-byte multiples)
// takes the loop whatever the request; K 256, N 512 takes the requested path.
//
// env: TMT_GROUPED_GEMM=cutlass TMT_GROUPED_GEMM=cublas TMT_GROUPED_GEMM=loop
#include "kernels/grouped_linear.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/cuda/grouped_gemm.h"
#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};

std::string str(const std::vector<int64_t>& v) {
  std::string s;
  for (int64_t c : v) s += std::to_string(c) + " ";
  return s;
}

void check(DType dtype, DType dweight_dtype, const std::vector<int64_t>& counts, int64_t k,
           int64_t n, uint64_t seed) {
  SCOPED_TRACE(std::string(dtype_name(dtype)) + " dweight " +
               std::string(dtype_name(dweight_dtype)) + " counts " + str(counts) +
               "K=" + std::to_string(k) + " N=" + std::to_string(n));
  const int64_t rows = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  const auto experts = static_cast<int64_t>(counts.size());
  const size_t bytes = 8 * 8 * static_cast<size_t>(rows * (k + n) + experts * n * k) + (1 << 16);
  Arena host(Device::kCpu, bytes, "host");
  Arena dev(Device::kCuda, bytes, "device");
  const double tol = dtype == DType::kBF16 ? 1e-2 : 1e-5;
  const double dweight_tol = dweight_dtype == DType::kBF16 ? 1e-2 : 1e-5;

  Tensor x = host.alloc(DType::kF32, {rows, k});
  Tensor w = host.alloc(DType::kF32, {experts, n, k});
  Tensor dy = host.alloc(DType::kF32, {rows, n});
  Tensor dw = host.alloc(DType::kF32, {experts, n, k});
  test::fill_normal(x, seed);
  test::fill_normal(w, seed + 1, 0.1);
  test::fill_normal(dy, seed + 2);
  test::fill_normal(dw, seed + 3);
  for (const Tensor& t : {x, w, dy}) test::round_to(t, dtype);
  test::round_to(dw, dweight_dtype);
  const std::vector<double> dw_before = test::to_doubles(dw);

  Tensor xd = test::to_device_as(dev, host, x, dtype);
  Tensor wd = test::to_device_as(dev, host, w, dtype);
  Tensor dyd = test::to_device_as(dev, host, dy, dtype);
  Tensor dwd = test::to_device_as(dev, host, dw, dweight_dtype);
  const auto close = [&](const Tensor& got_device, const Tensor& want, double rtol,
                         const char* what) {
    test::expect_close(test::to_doubles(test::to_host(host, got_device)), test::to_doubles(want),
                       rtol, what);
  };

  Tensor y = host.alloc(DType::kF32, {rows, n});
  grouped_linear_fwd(kCpu, y, x, w, counts);
  Tensor yd = dev.alloc(dtype, {rows, n});
  test::poison(yd);
  grouped_linear_fwd(test::gpu(), yd, xd, wd, counts);
  close(yd, y, tol, "y");

  Tensor dx = host.alloc(DType::kF32, {rows, k});
  grouped_linear_bwd(kCpu, dx, dw, dy, x, w, counts);
  Tensor dxd = dev.alloc(dtype, {rows, k});
  test::poison(dxd);
  grouped_linear_bwd(test::gpu(), dxd, dwd, dyd, xd, wd, counts);
  close(dxd, dx, tol, "dx");
  close(dwd, dw, dweight_tol, "dweight (accumulated)");

  // An expert without rows keeps its dweight bit for bit.
  const std::vector<double> got = test::to_doubles(test::to_host(host, dwd));
  const auto per_expert = static_cast<size_t>(n * k);
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] != 0) continue;
    for (size_t i = e * per_expert; i < (e + 1) * per_expert; ++i) {
      ASSERT_EQ(got[i], dw_before[i]) << "expert " << e << " without rows, element " << i;
    }
  }
}

TEST(CudaGroupedLinear, MatchesReference) {
  uint64_t seed = 1;
  const std::vector<std::vector<int64_t>> groups = {
      {1}, {0, 3, 0, 17}, {37, 0, 5, 129, 1, 0}, {0, 0}, {256, 200, 0, 333}};
  for (const auto& counts : groups) {
    check(DType::kF32, DType::kF32, counts, 100, 37, seed += 10);
    check(DType::kF32, DType::kF32, counts, 64, 1001, seed += 10);
    check(DType::kBF16, DType::kBF16, counts, 128, 96, seed += 10);
    check(DType::kBF16, DType::kF32, counts, 64, 1001, seed += 10);
    check(DType::kBF16, DType::kBF16, counts, 256, 512, seed += 10);
    check(DType::kBF16, DType::kF32, counts, 256, 512, seed += 10);
  }
}

// The path the requested one resolves to for aligned bf16 (printed, so that a run's log says
// which path it checked), and the loop for what the grouped paths cannot take.
TEST(CudaGroupedLinear, PathFollowsRequest) {
  const cuda::GroupedGemmChoice choice = cuda::requested_grouped_gemm();
  Arena dev(Device::kCuda, 1 << 20, "probe");
  const Tensor x = dev.alloc(DType::kBF16, {16, 64}), w = dev.alloc(DType::kBF16, {2, 32, 64});
  const Tensor y = dev.alloc(DType::kBF16, {16, 32});
  std::string why;
  const bool taken =
      cuda::grouped_gemm_supported(choice.path, cuda::GroupedPass::kFwd, y, x, w, 2, &why);
  const char* names[] = {"cutlass", "cublas", "loop"};
  std::printf("requested %s: %s\n", names[static_cast<int>(choice.path)],
              taken ? "taken" : ("falls back to the loop: " + why).c_str());
  if (choice.path != cuda::GroupedGemmPath::kCutlass) {
    EXPECT_TRUE(taken) << why;
  }
  const Tensor xf = dev.alloc(DType::kF32, {16, 64}), wf = dev.alloc(DType::kF32, {2, 32, 64});
  const Tensor yf = dev.alloc(DType::kF32, {16, 32});
  if (choice.path != cuda::GroupedGemmPath::kLoop) {
    EXPECT_FALSE(
        cuda::grouped_gemm_supported(choice.path, cuda::GroupedPass::kFwd, yf, xf, wf, 2, nullptr))
        << "f32 is the loop's";
  }
}

}  // namespace
}  // namespace tmt
