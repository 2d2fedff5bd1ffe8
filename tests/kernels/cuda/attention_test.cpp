// attention on CUDA against the CPU reference: causal GQA with and without a sliding window, ragged
// sequence lengths (not multiples of the tiles), and the degenerate cases where each query sees one
// key (S = 1, window = 1), whose dq and dk are exactly zero. The CUDA backend has two paths:
// bf16 with Dh 64 or 128 runs on the tensor cores, everything else on the fp32 kernel.
//   MatchesReference: head dims 16 to 256 (not only powers of two) in f32, to 1e-5 by norm, and in
//     bf16, to 1e-2 (Dh 64 and 128 take the tensor-core path here too).
//   TensorCoresMatchReference: bf16, Dh 64 and 128 by S 1, 2, 63, 64, 65, 200, 257 by H 4 / Hk 1,
//     2, 4 by window 0, 1, 17, 64, B 2, to kTensorCoreTol = 5e-3 by norm (bf16 products, P and dS
//     rounded to bf16). A CPU emulation of the kernels' warp instructions on these very inputs
//     measured about 2.0e-3 for out and 2.4e-3 for the gradients, at most 3.2e-3 (dk at S = 2).
//   TensorCoresLongSequenceSampledRows: the benchmark's shape (S 4096, H 16 / Hk 4, Dh 128), causal
//     and with a window of 1000, on sampled rows against a double reference.
// bf16 q/k/v/dout against the reference run in f32 on the bf16-rounded inputs; lse, always f32,
// to 1e-5. The backward gets the reference's out and lse so that both sides differentiate the same
// forward. Outputs are poisoned (NaN) first, so an element a kernel fails to write fails. Every
// check prints its case and the errors it measured.
//
// timeout: 600
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

struct Case {
  int64_t b, s, h, hk, dh, window;
};

// Relative error by norm allowed on the tensor-core path (bf16 products, P and dS rounded to bf16).
constexpr double kTensorCoreTol = 5e-3;

void check(DType dtype, const Case& c, uint64_t seed, double tol) {
  const std::string name = std::string(dtype_name(dtype)) + " B=" + std::to_string(c.b) +
                           " S=" + std::to_string(c.s) + " H=" + std::to_string(c.h) +
                           " Hk=" + std::to_string(c.hk) + " Dh=" + std::to_string(c.dh) +
                           " window=" + std::to_string(c.window);
  SCOPED_TRACE(name);
  std::printf("%s\n", name.c_str());
  const Shape qs{c.b, c.s, c.h, c.dh}, ks{c.b, c.s, c.hk, c.dh}, ls{c.b, c.h, c.s};
  const size_t bytes =
      8 * 16 * static_cast<size_t>(qs.numel() + ks.numel() + ls.numel()) + (1 << 16);
  Arena host(Device::kCpu, bytes, "host");
  Arena dev(Device::kCuda, bytes, "device");
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
  attention_fwd(test::gpu(), outd, lsed, qd, kd, vd, params);
  close(outd, out, tol, "out");
  close(lsed, lse, 1e-5, "lse");

  // Backward from the reference's out (rounded to the dtype, as a bf16 forward would store it).
  test::round_to(out, dtype);
  Tensor dq = host.alloc(DType::kF32, qs), dk = host.alloc(DType::kF32, ks);
  Tensor dv = host.alloc(DType::kF32, ks);
  attention_bwd(kCpu, dq, dk, dv, dout, q, k, v, out, lse, params);
  Tensor dqd = dev.alloc(dtype, qs), dkd = dev.alloc(dtype, ks), dvd = dev.alloc(dtype, ks);
  for (const Tensor& t : {dqd, dkd, dvd}) test::poison(t);
  attention_bwd(test::gpu(), dqd, dkd, dvd, doutd, qd, kd, vd,
                test::to_device_as(dev, host, out, dtype), test::to_device(dev, lse), params);
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
    {1, 1, 1, 1, 16, 0},    {2, 37, 4, 2, 64, 0},  {1, 100, 8, 2, 128, 0},   {2, 129, 6, 3, 80, 16},
    {1, 200, 4, 1, 64, 33}, {1, 65, 2, 2, 256, 0}, {1, 300, 4, 4, 128, 100}, {3, 31, 4, 1, 32, 1},
    {2, 2, 2, 1, 16, 0},    {2, 45, 4, 2, 48, 2},
};

TEST(CudaAttention, MatchesReference) {
  uint64_t seed = 1;
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (const Case& c : kCases) check(dtype, c, seed += 10, dtype == DType::kBF16 ? 1e-2 : 1e-5);
  }
}

TEST(CudaAttention, TensorCoresMatchReference) {
  uint64_t seed = 1000;
  for (int64_t dh : {64, 128}) {
    for (int64_t s : {1, 2, 63, 64, 65, 200, 257}) {
      for (int64_t hk : {1, 2, 4}) {
        for (int64_t window : {0, 1, 17, 64}) {
          check(DType::kBF16, {2, s, 4, hk, dh, window}, seed += 10, kTensorCoreTol);
        }
      }
    }
  }
}

// The benchmark's shape on the tensor cores, where a full CPU reference would take minutes: out,
// lse and dq on sampled query rows (every head), dk and dv on sampled keys (every kv head), against
// a reference in double computed for those rows alone. The backward's reference takes the GPU's out
// and lse, the inputs the backward differentiates.
TEST(CudaAttention, TensorCoresLongSequenceSampledRows) {
  constexpr int64_t kS = 4096, kH = 16, kHk = 4, kDh = 128, kGroup = kH / kHk;
  const std::vector<int64_t> sampled = {0,    1,    2,    63,   64,   65,   127,  128,
                                        1000, 1023, 2047, 2048, 3001, 4031, 4094, 4095};
  const Shape qs{1, kS, kH, kDh}, ks{1, kS, kHk, kDh}, ls{1, kH, kS};
  Arena host(Device::kCpu, size_t{640} << 20, "host");
  Arena dev(Device::kCuda, size_t{256} << 20, "device");
  uint64_t seed = 77;
  for (int64_t window : {0, 1000}) {
    SCOPED_TRACE("S=4096 H=16 Hk=4 Dh=128 window=" + std::to_string(window));
    std::printf("bf16 B=1 S=4096 H=16 Hk=4 Dh=128 window=%ld (sampled rows)\n",
                static_cast<long>(window));
    const size_t host_mark = host.mark(), dev_mark = dev.mark();
    const AttentionParams params{1.0 / std::sqrt(static_cast<double>(kDh)), window};
    const auto input = [&](Shape shape) {
      Tensor t = host.alloc(DType::kF32, shape);
      test::fill_normal(t, seed++);
      test::round_to(t, DType::kBF16);
      return t;
    };
    const Tensor q = input(qs), k = input(ks), v = input(ks), dout = input(qs);
    const Tensor qd = test::to_device_as(dev, host, q, DType::kBF16);
    const Tensor kd = test::to_device_as(dev, host, k, DType::kBF16);
    const Tensor vd = test::to_device_as(dev, host, v, DType::kBF16);
    const Tensor doutd = test::to_device_as(dev, host, dout, DType::kBF16);
    const Tensor outd = dev.alloc(DType::kBF16, qs), lsed = dev.alloc(DType::kF32, ls);
    const Tensor dqd = dev.alloc(DType::kBF16, qs), dkd = dev.alloc(DType::kBF16, ks);
    const Tensor dvd = dev.alloc(DType::kBF16, ks);
    for (const Tensor& t : {outd, lsed, dqd, dkd, dvd}) test::poison(t);
    attention_fwd(test::gpu(), outd, lsed, qd, kd, vd, params);
    attention_bwd(test::gpu(), dqd, dkd, dvd, doutd, qd, kd, vd, outd, lsed, params);
    const std::vector<double> out = test::to_doubles(test::to_host(host, outd));
    const std::vector<double> lse = test::to_doubles(test::to_host(host, lsed));
    const std::vector<double> dq = test::to_doubles(test::to_host(host, dqd));
    const std::vector<double> dk = test::to_doubles(test::to_host(host, dkd));
    const std::vector<double> dv = test::to_doubles(test::to_host(host, dvd));

    const float* qp = q.ptr<const float>();
    const float* kp = k.ptr<const float>();
    const float* vp = v.ptr<const float>();
    const float* dop = dout.ptr<const float>();
    const auto q_at = [](int64_t i, int64_t h) { return (i * kH + h) * kDh; };
    const auto k_at = [](int64_t j, int64_t g) { return (j * kHk + g) * kDh; };
    const auto dot = [](const float* a, const float* b) {
      double acc = 0;
      for (int64_t d = 0; d < kDh; ++d) acc += static_cast<double>(a[d]) * b[d];
      return acc;
    };
    const auto dot_out = [&](int64_t i, int64_t h) {  // D = dout · out, out as the GPU wrote it
      double acc = 0;
      for (int64_t d = 0; d < kDh; ++d) acc += dop[q_at(i, h) + d] * out[q_at(i, h) + d];
      return acc;
    };
    const auto first_key = [&](int64_t i) {
      return window > 0 ? std::max<int64_t>(0, i - window + 1) : 0;
    };
    const double scale = params.softmax_scale;

    std::vector<double> out_got, out_want, lse_got, lse_want, dq_got, dq_want;
    for (int64_t i : sampled) {
      for (int64_t h = 0; h < kH; ++h) {
        const int64_t g = h / kGroup;
        std::vector<double> score;
        double m = -INFINITY;
        for (int64_t j = first_key(i); j <= i; ++j) {
          score.push_back(scale * dot(qp + q_at(i, h), kp + k_at(j, g)));
          m = std::max(m, score.back());
        }
        double sum = 0;
        for (double x : score) sum += std::exp(x - m);
        std::vector<double> o(kDh, 0.0), dqi(kDh, 0.0);
        const double d_i = dot_out(i, h), lse_gpu = lse[static_cast<size_t>(h * kS + i)];
        for (int64_t j = first_key(i); j <= i; ++j) {
          const double x = score[static_cast<size_t>(j - first_key(i))];
          const double w = std::exp(x - m) / sum, p = std::exp(x - lse_gpu);
          const double ds = p * (dot(dop + q_at(i, h), vp + k_at(j, g)) - d_i);
          for (int64_t d = 0; d < kDh; ++d) {
            o[d] += w * vp[k_at(j, g) + d];
            dqi[d] += scale * ds * kp[k_at(j, g) + d];
          }
        }
        for (int64_t d = 0; d < kDh; ++d) {
          out_got.push_back(out[q_at(i, h) + d]);
          out_want.push_back(o[d]);
          dq_got.push_back(dq[q_at(i, h) + d]);
          dq_want.push_back(dqi[d]);
        }
        lse_got.push_back(lse_gpu);
        lse_want.push_back(m + std::log(sum));
      }
    }
    std::vector<double> dk_got, dk_want, dv_got, dv_want;
    for (int64_t j : sampled) {
      for (int64_t g = 0; g < kHk; ++g) {
        std::vector<double> dkj(kDh, 0.0), dvj(kDh, 0.0);
        const int64_t last = window > 0 ? std::min(kS, j + window) : kS;  // queries that see j
        for (int64_t h = g * kGroup; h < (g + 1) * kGroup; ++h) {
          for (int64_t i = j; i < last; ++i) {
            const double p = std::exp(scale * dot(qp + q_at(i, h), kp + k_at(j, g)) -
                                      lse[static_cast<size_t>(h * kS + i)]);
            const double ds = p * (dot(dop + q_at(i, h), vp + k_at(j, g)) - dot_out(i, h));
            for (int64_t d = 0; d < kDh; ++d) {
              dkj[d] += scale * ds * qp[q_at(i, h) + d];
              dvj[d] += p * dop[q_at(i, h) + d];
            }
          }
        }
        for (int64_t d = 0; d < kDh; ++d) {
          dk_got.push_back(dk[k_at(j, g) + d]);
          dk_want.push_back(dkj[d]);
          dv_got.push_back(dv[k_at(j, g) + d]);
          dv_want.push_back(dvj[d]);
        }
      }
    }
    test::expect_close(out_got, out_want, kTensorCoreTol, "out (sampled rows)");
    test::expect_close(lse_got, lse_want, 1e-5, "lse (sampled rows)");
    test::expect_close(dq_got, dq_want, kTensorCoreTol, "dq (sampled rows)");
    test::expect_close(dk_got, dk_want, kTensorCoreTol, "dk (sampled keys)");
    test::expect_close(dv_got, dv_want, kTensorCoreTol, "dv (sampled keys)");
    host.reset(host_mark);
    dev.reset(dev_mark);
  }
}

}  // namespace
}  // namespace tmt
