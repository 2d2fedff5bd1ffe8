// The grouped GEMMs of kernels/cuda/grouped_gemm.h, each path called directly — CUTLASS in each
// tile configuration with host and with device counts, cublasGemmGroupedBatchedEx with host
// counts — against the CPU reference (grouped_linear on f32 copies of the bf16-rounded operands):
// fwd and dgrad into poisoned bf16 outputs (a row left unwritten is NaN), wgrad accumulated onto
// a non-zero dW in bf16 and in f32, experts without rows keeping dW[e] bit for bit. Groups:
// uneven with empty experts, one expert taking every row, E = 8 and 4, R not a multiple of any
// tile. Tolerances (relative, by norm) as in grouped_linear_test: bf16 outputs 1e-2, f32 dW 1e-5.
// The kernel-level loop path is grouped_linear_test's (TMT_GROUPED_GEMM=loop).
#include "kernels/cuda/grouped_gemm.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/grouped_linear.h"
#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

using cuda::CutlassTile;
using cuda::GroupedGemmChoice;
using cuda::GroupedGemmPath;
using cuda::GroupedPass;

const Context kCpu{};

struct Case {
  std::vector<int64_t> counts;
  int64_t k, n;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {{0, 300, 17, 0, 1, 129, 64, 7}, 256, 512},  // E = 8, R = 518, two experts empty
      {{0, 0, 0, 517, 0, 0, 0, 0}, 256, 512},      // one expert takes all rows
      {{5, 0, 250, 3}, 512, 256},                  // E = 4, K > N
      {{40, 200, 0, 93}, 384, 1536},               // N a multiple of 128, not of 256
  };
  return all;
}

// How the counts reach the kernel.
enum class Counts : uint8_t { kHost, kDevice };

struct Path {
  GroupedGemmChoice choice;
  Counts counts = Counts::kHost;
  std::string name;
};

std::string str(const std::vector<int64_t>& v) {
  std::string s;
  for (int64_t c : v) s += std::to_string(c) + " ";
  return s;
}

// Runs one pass; false when the path declined it (cuBLAS without an f32 output).
bool run(const Path& p, GroupedPass pass, const Tensor& out, const Tensor& a, const Tensor& b,
         const std::vector<int64_t>& counts, const Tensor& counts_device) {
  if (p.counts == Counts::kDevice) {
    cuda::grouped_gemm(test::gpu(), p.choice.tile, pass, out, a, b, counts_device);
    return true;
  }
  return cuda::grouped_gemm(test::gpu(), p.choice, pass, out, a, b, counts);
}

// One case through one path, all three passes; dW in `dweight_dtype`.
void check(const Path& p, const Case& c, DType dweight_dtype, uint64_t seed) {
  SCOPED_TRACE(p.name + ", dweight " + std::string(dtype_name(dweight_dtype)) + ", counts " +
               str(c.counts) + "K=" + std::to_string(c.k) + " N=" + std::to_string(c.n));
  const int64_t rows = std::accumulate(c.counts.begin(), c.counts.end(), int64_t{0});
  const auto experts = static_cast<int64_t>(c.counts.size());
  const int64_t k = c.k, n = c.n;
  const size_t bytes = 8 * 8 * static_cast<size_t>(rows * (k + n) + experts * n * k) + (1 << 16);
  Arena host(Device::kCpu, bytes, "host");
  Arena dev(Device::kCuda, bytes, "device");
  const double tol = 1e-2, dweight_tol = dweight_dtype == DType::kBF16 ? 1e-2 : 1e-5;

  Tensor x = host.alloc(DType::kF32, {rows, k});
  Tensor w = host.alloc(DType::kF32, {experts, n, k});
  Tensor dy = host.alloc(DType::kF32, {rows, n});
  Tensor dw = host.alloc(DType::kF32, {experts, n, k});
  test::fill_normal(x, seed);
  test::fill_normal(w, seed + 1, 0.1);
  test::fill_normal(dy, seed + 2);
  test::fill_normal(dw, seed + 3);
  for (const Tensor& t : {x, w, dy}) test::round_to(t, DType::kBF16);
  test::round_to(dw, dweight_dtype);
  const std::vector<double> dw_before = test::to_doubles(dw);

  const Tensor xd = test::to_device_as(dev, host, x, DType::kBF16);
  const Tensor wd = test::to_device_as(dev, host, w, DType::kBF16);
  const Tensor dyd = test::to_device_as(dev, host, dy, DType::kBF16);
  const Tensor dwd = test::to_device_as(dev, host, dw, dweight_dtype);
  Tensor counts_host = host.alloc(DType::kI64, {experts});
  std::copy(c.counts.begin(), c.counts.end(), counts_host.ptr<int64_t>());
  const Tensor counts_device = test::to_device(dev, counts_host);

  Tensor y = host.alloc(DType::kF32, {rows, n});
  Tensor dx = host.alloc(DType::kF32, {rows, k});
  grouped_linear_fwd(kCpu, y, x, w, c.counts);
  grouped_linear_bwd(kCpu, dx, dw, dy, x, w, c.counts);  // dw: before + dyᵀ x
  const auto close = [&](const Tensor& got_device, const Tensor& want, double rtol,
                         const char* what) {
    test::expect_close(test::to_doubles(test::to_host(host, got_device)), test::to_doubles(want),
                       rtol, what);
  };

  const Tensor yd = dev.alloc(DType::kBF16, {rows, n});
  test::poison(yd);
  ASSERT_TRUE(run(p, GroupedPass::kFwd, yd, xd, wd, c.counts, counts_device));
  close(yd, y, tol, "y");

  const Tensor dxd = dev.alloc(DType::kBF16, {rows, k});
  test::poison(dxd);
  ASSERT_TRUE(run(p, GroupedPass::kDgrad, dxd, dyd, wd, c.counts, counts_device));
  close(dxd, dx, tol, "dx");

  if (!run(p, GroupedPass::kWgrad, dwd, dyd, xd, c.counts, counts_device)) {
    ASSERT_EQ(p.choice.path, GroupedGemmPath::kCublas);
    std::printf("NOTE: %s declined bf16 -> %s (weight gradient not checked)\n", p.name.c_str(),
                std::string(dtype_name(dweight_dtype)).c_str());
    return;
  }
  close(dwd, dw, dweight_tol, "dweight (accumulated)");
  const std::vector<double> got = test::to_doubles(test::to_host(host, dwd));
  const auto per_expert = static_cast<size_t>(n * k);
  for (size_t e = 0; e < c.counts.size(); ++e) {
    if (c.counts[e] != 0) continue;
    for (size_t i = e * per_expert; i < (e + 1) * per_expert; ++i) {
      ASSERT_EQ(got[i], dw_before[i]) << "expert " << e << " without rows, element " << i;
    }
  }
}

bool hopper() {
  cudaDeviceProp prop{};
  return cudaGetDeviceProperties(&prop, 0) == cudaSuccess && prop.major == 9 && prop.minor == 0;
}

// Whether `path` takes aligned bf16 operands here (the reason in *why when not).
bool available(GroupedGemmPath path, std::string* why) {
  Arena dev(Device::kCuda, 1 << 20, "probe");
  const Tensor x = dev.alloc(DType::kBF16, {16, 64}), w = dev.alloc(DType::kBF16, {2, 32, 64});
  const Tensor y = dev.alloc(DType::kBF16, {16, 32});
  return cuda::grouped_gemm_supported(path, GroupedPass::kFwd, y, x, w, 2, why);
}

void check_all(const std::vector<Path>& paths) {
  uint64_t seed = 1;
  for (const Path& p : paths) {
    for (const Case& c : cases()) {
      for (DType dweight : {DType::kBF16, DType::kF32}) check(p, c, dweight, seed += 10);
    }
  }
}

TEST(CudaGroupedGemm, CutlassMatchesReference) {
  std::string why;
  if (!available(GroupedGemmPath::kCutlass, &why)) {
    // On an sm_90 GPU with a 90a build it is the default path: it must be there.
    ASSERT_FALSE(hopper() && why.find("TMT_CUDA_ARCHS") == std::string::npos)
        << "CUTLASS unavailable on an sm_90 GPU: " << why;
    GTEST_SKIP() << "CUTLASS path unavailable: " << why;
  }
  std::vector<Path> paths;
  const std::pair<CutlassTile, const char*> tiles[] = {
      {CutlassTile::kCooperative128x256, "cutlass 128x256"},
      {CutlassTile::kCooperative128x128, "cutlass 128x128"},
      {CutlassTile::kPingpong128x128, "cutlass pingpong"}};
  for (const auto& [tile, name] : tiles) {
    const GroupedGemmChoice choice{GroupedGemmPath::kCutlass, tile};
    paths.push_back({choice, Counts::kHost, std::string(name) + ", host counts"});
    paths.push_back({choice, Counts::kDevice, std::string(name) + ", device counts"});
  }
  check_all(paths);
}

TEST(CudaGroupedGemm, CublasMatchesReference) {
  std::string why;
  ASSERT_TRUE(available(GroupedGemmPath::kCublas, &why)) << why;
  check_all({{{GroupedGemmPath::kCublas, CutlassTile::kCooperative128x256},
              Counts::kHost,
              "cublas grouped"}});
}

// Device counts are clamped, not trusted: a sum beyond R cuts the last groups at row R, so
// nothing is written past y's end (the guard rows after it stay poisoned).
TEST(CudaGroupedGemm, DeviceCountsBeyondRowsAreCut) {
  std::string why;
  if (!available(GroupedGemmPath::kCutlass, &why)) GTEST_SKIP() << why;
  const int64_t rows = 100, guard = 64, k = 64, n = 128;
  const std::vector<int64_t> counts = {60, 70, 50};  // sums to 180 > 100
  Arena host(Device::kCpu, 1 << 22, "host");
  Arena dev(Device::kCuda, 1 << 22, "device");
  Tensor x = host.alloc(DType::kF32, {rows, k}), w = host.alloc(DType::kF32, {3, n, k});
  test::fill_normal(x, 7);
  test::fill_normal(w, 8, 0.1);
  const Tensor xd = test::to_device_as(dev, host, x, DType::kBF16);
  const Tensor wd = test::to_device_as(dev, host, w, DType::kBF16);
  const Tensor y_all = dev.alloc(DType::kBF16, {rows + guard, n});
  test::poison(y_all);
  Tensor counts_host = host.alloc(DType::kI64, {3});
  std::copy(counts.begin(), counts.end(), counts_host.ptr<int64_t>());
  cuda::grouped_gemm(test::gpu(), CutlassTile::kCooperative128x256, GroupedPass::kFwd,
                     y_all.slice(0, rows), xd, wd, test::to_device(dev, counts_host));
  const std::vector<double> got = test::to_doubles(test::to_host(host, y_all));
  for (int64_t i = 0; i < rows * n; ++i) ASSERT_FALSE(std::isnan(got[i])) << "row " << i / n;
  for (int64_t i = rows * n; i < (rows + guard) * n; ++i) {
    ASSERT_TRUE(std::isnan(got[i])) << "written past R: row " << i / n;
  }
}

}  // namespace
}  // namespace tmt
