// attention on CUDA (our flash-style kernel) against the CPU reference: causal GQA with and without
// a sliding window, ragged sequence lengths (not multiples of the 32-row tile), head dims from 16 to
// 256 (not only powers of two), and the degenerate cases where each query sees one key (S = 1,
// window = 1), whose dq and dk are exactly zero. f32 to 1e-5 by norm; bf16 q/k/v/dout against the reference run in
// f32 on the bf16-rounded inputs, to 1e-2 (lse, always f32, to 1e-5). The backward gets the
// reference's out and lse so that both sides differentiate the same forward.
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};
const Context kGpu{Device::kCuda, nullptr};

struct Case {
  int64_t b, s, h, hk, dh, window;
};

void check(DType dtype, const Case& c, uint64_t seed) {
  SCOPED_TRACE(std::string(dtype_name(dtype)) + " B=" + std::to_string(c.b) +
               " S=" + std::to_string(c.s) + " H=" + std::to_string(c.h) +
               " Hk=" + std::to_string(c.hk) + " Dh=" + std::to_string(c.dh) +
               " window=" + std::to_string(c.window));
  const Shape qs{c.b, c.s, c.h, c.dh}, ks{c.b, c.s, c.hk, c.dh}, ls{c.b, c.h, c.s};
  const size_t bytes = 8 * 16 * static_cast<size_t>(qs.numel() + ks.numel() + ls.numel()) +
                       (1 << 16);
  Arena host(Device::kCpu, bytes, "host");
  Arena dev(Device::kCuda, bytes, "device");
  const double tol = dtype == DType::kBF16 ? 1e-2 : 1e-5;
  const AttentionParams params{1.0 / std::sqrt(static_cast<double>(c.dh)), c.window};

  const auto input = [&](Shape shape, uint64_t s) {
    Tensor t = host.alloc(DType::kF32, shape);
    test::fill_normal(t, s);
    test::round_to(t, dtype);
    return t;
  };
  Tensor q = input(qs, seed), k = input(ks, seed + 1), v = input(ks, seed + 2);
  Tensor dout = input(qs, seed + 3);
  Tensor qd = test::to_device_as(dev, host, q, dtype), kd = test::to_device_as(dev, host, k, dtype);
  Tensor vd = test::to_device_as(dev, host, v, dtype);
  Tensor doutd = test::to_device_as(dev, host, dout, dtype);
  const auto close = [&](const Tensor& got_device, const Tensor& want, double rtol,
                         const char* what) {
    test::expect_close(test::to_doubles(test::to_host(host, got_device)), test::to_doubles(want),
                       rtol, what);
  };

  Tensor out = host.alloc(DType::kF32, qs), lse = host.alloc(DType::kF32, ls);
  attention_fwd(kCpu, out, lse, q, k, v, params);
  Tensor outd = dev.alloc(dtype, qs), lsed = dev.alloc(DType::kF32, ls);
  test::poison(outd);
  test::poison(lsed);
  attention_fwd(kGpu, outd, lsed, qd, kd, vd, params);
  close(outd, out, tol, "out");
  close(lsed, lse, 1e-5, "lse");

  // Backward from the reference's out (rounded to the dtype, as a bf16 forward would store it).
  test::round_to(out, dtype);
  Tensor dq = host.alloc(DType::kF32, qs), dk = host.alloc(DType::kF32, ks);
  Tensor dv = host.alloc(DType::kF32, ks);
  attention_bwd(kCpu, dq, dk, dv, dout, q, k, v, out, lse, params);
  Tensor dqd = dev.alloc(dtype, qs), dkd = dev.alloc(dtype, ks), dvd = dev.alloc(dtype, ks);
  for (const Tensor& t : {dqd, dkd, dvd}) test::poison(t);
  attention_bwd(kGpu, dqd, dkd, dvd, doutd, qd, kd, vd, test::to_device_as(dev, host, out, dtype),
                test::to_device(dev, lse), params);
  close(dvd, dv, tol, "dv");
  if (c.s > 1 && c.window != 1) {
    close(dqd, dq, tol, "dq");
    close(dkd, dk, tol, "dk");
    return;
  }
  // Each query sees one key: P = 1, dP = D, so dq and dk are exactly zero and the reference says
  // so; the kernel's rounding residue must stay under tol times the RMS of dv (= dout here).
  const std::vector<double> dv_values = test::to_doubles(dv);
  double rms = 0;
  for (double x : dv_values) rms += x * x;
  rms = std::sqrt(rms / static_cast<double>(dv_values.size()));
  for (const auto& [got, what] : {std::pair{dqd, "dq"}, std::pair{dkd, "dk"}}) {
    double max_abs = 0;
    for (double x : test::to_doubles(test::to_host(host, got))) {
      max_abs = std::isnan(x) ? INFINITY : std::max(max_abs, std::abs(x));
    }
    EXPECT_LE(max_abs, tol * rms) << what << " (exactly zero)";
    std::printf("  %s (exactly zero): max abs %g, dv rms %g\n", what, max_abs, rms);
  }
}

constexpr Case kCases[] = {
    {1, 1, 1, 1, 16, 0},      {2, 37, 4, 2, 64, 0},   {1, 100, 8, 2, 128, 0},
    {2, 129, 6, 3, 80, 16},   {1, 200, 4, 1, 64, 33}, {1, 65, 2, 2, 256, 0},
    {1, 300, 4, 4, 128, 100}, {3, 31, 4, 1, 32, 1},  {2, 2, 2, 1, 16, 0},
    {2, 45, 4, 2, 48, 2},
};

TEST(CudaAttention, MatchesReference) {
  uint64_t seed = 1;
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (const Case& c : kCases) check(dtype, c, seed += 10);
  }
}

}  // namespace
}  // namespace tmt
