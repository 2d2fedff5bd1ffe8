// attention on CUDA against the CPU reference: causal GQA with and without a sliding window, ragged
// sequence lengths (not multiples of the tiles), a value head dim Dv different from Dqk, and the
// degenerate cases where each query sees one key (S = 1, window = 1), whose dq and dk are exactly
// zero. The CUDA backend has three paths (kernels/cuda/attention.h): cuDNN's fused SDPA and our
// tensor-core kernels for bf16, an fp32 kernel for the rest. Each test says which it runs: the
// public op (its own choice of path, as training runs it) or one path called directly.
//   MatchesReference (the op): head dims 16 to 256 (not only powers of two), Dqk ≠ Dv, in f32, to
//     1e-5 by norm, and in bf16, to 1e-2 (cuDNN where it takes the shape, the other paths where it
//     does not, e.g. the backward at S = 1).
//   TensorCoresMatchReference (the flash kernels): bf16, Dh 64 and 128 by S 1, 2, 63, 64, 65, 200,
//     257 by H 4 / Hk 1, 2, 4 by window 0, 1, 17, 64, B 2, to kTensorCoreTol = 5e-3 by norm (bf16
//     products, P and dS rounded to bf16). A CPU emulation of the kernels' warp instructions on
//     these very inputs measured about 2.0e-3 for out and 2.4e-3 for the gradients, at most 3.2e-3
//     (dk at S = 2).
//   CudnnMatchesReference (cuDNN): causal and sliding windows (1, 17, 33, 50, 64, 100), GQA (H 8 /
//     Hk 2, H 4 / Hk 1), Dh 64, 96 and 128, Dqk 192 / Dv 128, S not a multiple of 64, B 1 to 3; to
//     kTensorCoreTol. cuDNN must take every one of these shapes (the failure says why if not).
//   CudnnAgreesWithTensorCores: cuDNN and the flash kernels on the same inputs where both apply:
//     out and lse of the forward; dq, dk, dv of the backward from the same out and lse.
//   LongSequenceSampledRows: the benchmark's shape (S 4096, H 16 / Hk 4, Dh 128), causal and with
//     a window of 1000, on sampled rows against a double reference, through cuDNN and through the
//     flash kernels.
//   QueriesLastMatchReference: S < Sk (queries aligned last) on every path, to the tolerances
//     above.
//   PathsChosen: bf16 shapes cuDNN takes go to cuDNN unless TMT_ATTENTION says otherwise; f32 to
//     the fp32 kernel.
// Run it with TMT_ATTENTION unset: a forced path makes the op fatal on MatchesReference's shapes
// that the path does not take (kernels/attention.h).
// bf16 q/k/v/dout against the reference run in f32 on the bf16-rounded inputs; lse, always f32,
// to 1e-5. The backward gets the reference's out and lse so that both sides differentiate the same
// forward. Outputs are poisoned (NaN) first, so an element a kernel fails to write fails. Every
// check prints its case and the errors it measured. Each case gets a workspace of its own, sized by
// the queries of what it calls (cuDNN's depends on the whole shape).
//
// timeout: 900
#include "kernels/attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "kernels/base/workspace.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/flash_attention.h"
#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};

struct Case {
  int64_t b, s, h, hk, dqk, dv, window;
  int64_t sk = 0;  // keys; 0: S. More: the queries are the last S positions (queries last)
  int64_t keys() const { return sk > 0 ? sk : s; }
};

// Relative error by norm allowed on the bf16 tensor-core paths, cuDNN's and ours (bf16 products,
// P and dS rounded to bf16).
constexpr double kTensorCoreTol = 5e-3;

// What a check calls: the public op (which picks its path) or one path directly.
enum class Via { kOp, kCudnn, kFlash };

const char* via_name(Via via) {
  return via == Via::kOp ? "op" : via == Via::kCudnn ? "cudnn" : "flash";
}

const char* pass_name(cuda::AttentionPass pass) {
  return pass == cuda::AttentionPass::kForward ? "forward" : "backward";
}

constexpr cuda::AttentionPass kPasses[] = {cuda::AttentionPass::kForward,
                                           cuda::AttentionPass::kBackward};

AttentionShape shape_of(const Case& c, DType dtype) {
  return {c.b, c.s, c.h, c.hk, c.dqk, c.dv, dtype, c.keys()};
}

// A GPU context (the default stream) with a workspace of its own, sized for both passes of `via`
// at this shape by the queries of what it calls.
class CaseContext {
 public:
  CaseContext(Via via, const AttentionShape& shape, const AttentionParams& params) {
    constexpr Device kCuda = Device::kCuda;
    switch (via) {
      case Via::kOp:
        workspace_.reserve(attention_fwd_workspace_bytes(kCuda, shape, params));
        workspace_.reserve(attention_bwd_workspace_bytes(kCuda, shape, params));
        break;
      case Via::kCudnn:
        for (cuda::AttentionPass pass : kPasses) {
          workspace_.reserve(cuda::cudnn_attention_workspace_bytes(pass, shape, params));
        }
        break;
      case Via::kFlash:
        workspace_.reserve(
            cuda::flash_attention_bwd_workspace_bytes(shape.batch, shape.seq, shape.heads));
        break;
    }
    workspace_.allocate(kCuda);
  }
  CaseContext(const CaseContext&) = delete;
  CaseContext& operator=(const CaseContext&) = delete;
  Context ctx() { return Context{Device::kCuda, nullptr, nullptr, &workspace_}; }

 private:
  Workspace workspace_;
};

// Whether `via` takes both passes at this shape; a failure saying why (cuDNN's reason) when not.
::testing::AssertionResult takes(Via via, const AttentionShape& shape,
                                 const AttentionParams& params) {
  if (via == Via::kFlash &&
      !cuda::flash_attention_supported(shape.dtype, shape.head_dim_qk, shape.head_dim_v, {})) {
    return ::testing::AssertionFailure() << "the flash kernels do not take this shape";
  }
  if (via == Via::kCudnn) {
    for (cuda::AttentionPass pass : kPasses) {
      std::string why;
      if (!cuda::cudnn_attention_supported(pass, shape, params, &why)) {
        return ::testing::AssertionFailure()
               << "cuDNN refuses the " << pass_name(pass) << ": " << why;
      }
    }
  }
  return ::testing::AssertionSuccess();
}

void run_fwd(Via via, const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
             const Tensor& k, const Tensor& v, const AttentionParams& p) {
  switch (via) {
    case Via::kOp:
      return attention_fwd(ctx, out, lse, q, k, v, p);
    case Via::kCudnn:
      return cuda::cudnn_attention_fwd(ctx, out, lse, q, k, v, p);
    case Via::kFlash:
      return cuda::flash_attention_fwd(ctx, out, lse, q, k, v, p);
  }
}

void run_bwd(Via via, const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
             const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
             const Tensor& out, const Tensor& lse, const AttentionParams& p) {
  switch (via) {
    case Via::kOp:
      return attention_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, p);
    case Via::kCudnn:
      return cuda::cudnn_attention_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, p);
    case Via::kFlash:
      return cuda::flash_attention_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, p);
  }
}

std::string case_name(Via via, DType dtype, const Case& c) {
  return std::string(via_name(via)) + " " + std::string(dtype_name(dtype)) +
         " B=" + std::to_string(c.b) + " S=" + std::to_string(c.s) + " H=" + std::to_string(c.h) +
         " Sk=" + std::to_string(c.keys()) + " Hk=" + std::to_string(c.hk) +
         " Dqk=" + std::to_string(c.dqk) + " Dv=" + std::to_string(c.dv) +
         " window=" + std::to_string(c.window);
}

void check(Via via, DType dtype, const Case& c, uint64_t seed, double tol) {
  const std::string name = case_name(via, dtype, c);
  SCOPED_TRACE(name);
  std::printf("%s\n", name.c_str());
  const Shape qs{c.b, c.s, c.h, c.dqk}, ks{c.b, c.keys(), c.hk, c.dqk}, ls{c.b, c.h, c.s};
  const Shape vs{c.b, c.keys(), c.hk, c.dv}, os{c.b, c.s, c.h, c.dv};
  const size_t bytes =
      8 * 16 * static_cast<size_t>(qs.numel() + ks.numel() + vs.numel() + os.numel() + ls.numel()) +
      (1 << 16);
  Arena host(Device::kCpu, bytes, "host");
  Arena dev(Device::kCuda, bytes, "device");
  const AttentionParams params{1.0 / std::sqrt(static_cast<double>(c.dqk)), c.window};
  ASSERT_TRUE(takes(via, shape_of(c, dtype), params));
  CaseContext gpu(via, shape_of(c, dtype), params);

  const auto input = [&](Shape shape, uint64_t s) {
    Tensor t = host.alloc(DType::kF32, shape);
    test::fill_normal(t, s);
    test::round_to(t, dtype);
    return t;
  };
  Tensor q = input(qs, seed), k = input(ks, seed + 1), v = input(vs, seed + 2);
  Tensor dout = input(os, seed + 3);
  Tensor qd = test::to_device_as(dev, host, q, dtype), kd = test::to_device_as(dev, host, k, dtype);
  Tensor vd = test::to_device_as(dev, host, v, dtype);
  Tensor doutd = test::to_device_as(dev, host, dout, dtype);
  const auto close = [&](const Tensor& got_device, const Tensor& want, double rtol,
                         const char* what) {
    test::expect_close(test::to_doubles(test::to_host(host, got_device)), test::to_doubles(want),
                       rtol, what);
  };

  Tensor out = host.alloc(DType::kF32, os), lse = host.alloc(DType::kF32, ls);
  attention_fwd(kCpu, out, lse, q, k, v, params);
  Tensor outd = dev.alloc(dtype, os), lsed = dev.alloc(DType::kF32, ls);
  test::poison(outd);
  test::poison(lsed);
  run_fwd(via, gpu.ctx(), outd, lsed, qd, kd, vd, params);
  close(outd, out, tol, "out");
  close(lsed, lse, 1e-5, "lse");

  // Backward from the reference's out (rounded to the dtype, as a bf16 forward would store it).
  test::round_to(out, dtype);
  Tensor dq = host.alloc(DType::kF32, qs), dk = host.alloc(DType::kF32, ks);
  Tensor dv = host.alloc(DType::kF32, vs);
  attention_bwd(kCpu, dq, dk, dv, dout, q, k, v, out, lse, params);
  Tensor dqd = dev.alloc(dtype, qs), dkd = dev.alloc(dtype, ks), dvd = dev.alloc(dtype, vs);
  for (const Tensor& t : {dqd, dkd, dvd}) test::poison(t);
  run_bwd(via, gpu.ctx(), dqd, dkd, dvd, doutd, qd, kd, vd,
          test::to_device_as(dev, host, out, dtype), test::to_device(dev, lse), params);
  close(dvd, dv, tol, "dv");
  if (c.keys() > 1 && c.window != 1) {
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
    {1, 1, 1, 1, 16, 16, 0},
    {2, 37, 4, 2, 64, 64, 0},
    {1, 100, 8, 2, 128, 128, 0},
    {2, 129, 6, 3, 80, 80, 16},
    {1, 200, 4, 1, 64, 64, 33},
    {1, 65, 2, 2, 256, 256, 0},
    {1, 300, 4, 4, 128, 128, 100},
    {3, 31, 4, 1, 32, 32, 1},
    {2, 2, 2, 1, 16, 16, 0},
    {2, 45, 4, 2, 48, 48, 2},
    // Dv != Dqk: multi-head latent attention's 192 / 128, and pairs only the fp32 kernel takes
    {2, 77, 8, 2, 192, 128, 0},
    {1, 90, 4, 1, 192, 128, 20},
    {2, 33, 2, 2, 40, 72, 5},
    {1, 50, 4, 2, 30, 20, 0},
};

TEST(CudaAttention, MatchesReference) {
  uint64_t seed = 1;
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (const Case& c : kCases) {
      check(Via::kOp, dtype, c, seed += 10, dtype == DType::kBF16 ? 1e-2 : 1e-5);
    }
  }
}

TEST(CudaAttention, TensorCoresMatchReference) {
  uint64_t seed = 1000;
  for (int64_t dh : {64, 128}) {
    for (int64_t s : {1, 2, 63, 64, 65, 200, 257}) {
      for (int64_t hk : {1, 2, 4}) {
        for (int64_t window : {0, 1, 17, 64}) {
          check(Via::kFlash, DType::kBF16, {2, s, 4, hk, dh, dh, window}, seed += 10,
                kTensorCoreTol);
        }
      }
    }
  }
}

// Shapes the cuDNN path must take (cuDNN 9.19 on sm_90): S >= 2 (its backward refuses S = 1) and
// head dims that are multiples of 8 (cudnn-frontend's checks; the plan is cuDNN's to find).
constexpr Case kCudnnCases[] = {
    {2, 100, 8, 2, 64, 64, 0},   {1, 257, 8, 2, 128, 128, 0},   {3, 65, 4, 1, 64, 64, 0},
    {2, 200, 8, 2, 64, 64, 33},  {1, 300, 4, 1, 128, 128, 100}, {2, 129, 8, 2, 128, 128, 64},
    {2, 63, 8, 2, 128, 128, 17}, {2, 70, 4, 2, 64, 64, 1},      {2, 2, 4, 2, 64, 64, 0},
    {2, 96, 8, 2, 96, 96, 0},    {2, 77, 8, 2, 192, 128, 0},    {1, 200, 8, 2, 192, 128, 50},
    {2, 129, 4, 4, 192, 128, 0},
};

TEST(CudaAttention, CudnnMatchesReference) {
  uint64_t seed = 5000;
  for (const Case& c : kCudnnCases) check(Via::kCudnn, DType::kBF16, c, seed += 10, kTensorCoreTol);
}

// cuDNN and the flash kernels on the same bf16 inputs: the forwards' out and lse; the backwards'
// dq, dk, dv, both from the flash forward's out and lse so that they differentiate the same
// forward. Each path is within kTensorCoreTol of the reference (above); here they must agree within
// twice that, and lse within 1e-5.
TEST(CudaAttention, CudnnAgreesWithTensorCores) {
  const Case cases[] = {{2, 100, 8, 2, 64, 64, 0},
                        {1, 257, 8, 2, 128, 128, 0},
                        {2, 200, 8, 2, 128, 128, 40},
                        {1, 1000, 16, 4, 128, 128, 0},
                        {3, 65, 4, 1, 64, 64, 7}};
  uint64_t seed = 7000;
  for (const Case& c : cases) {
    const std::string name = case_name(Via::kCudnn, DType::kBF16, c) + " vs flash";
    SCOPED_TRACE(name);
    std::printf("%s\n", name.c_str());
    const AttentionShape shape = shape_of(c, DType::kBF16);
    const AttentionParams params{1.0 / std::sqrt(static_cast<double>(c.dqk)), c.window};
    ASSERT_TRUE(takes(Via::kCudnn, shape, params));
    ASSERT_TRUE(takes(Via::kFlash, shape, params));
    CaseContext cudnn(Via::kCudnn, shape, params), flash(Via::kFlash, shape, params);
    const Shape qs{c.b, c.s, c.h, c.dqk}, ks{c.b, c.s, c.hk, c.dqk}, ls{c.b, c.h, c.s};
    const size_t bytes = 16 * static_cast<size_t>(qs.numel() + ks.numel() + ls.numel()) + (1 << 20);
    Arena host(Device::kCpu, 8 * bytes, "host");
    Arena dev(Device::kCuda, 8 * bytes, "device");
    const auto input = [&](Shape s) {
      Tensor t = host.alloc(DType::kF32, s);
      test::fill_normal(t, seed++);
      return test::to_device_as(dev, host, t, DType::kBF16);
    };
    const Tensor q = input(qs), k = input(ks), v = input(ks), dout = input(qs);
    // A pair of poisoned device tensors: cuDNN's and the flash kernels'.
    const auto outputs = [&](Shape s, DType dtype) {
      const std::pair<Tensor, Tensor> t{dev.alloc(dtype, s), dev.alloc(dtype, s)};
      test::poison(t.first);
      test::poison(t.second);
      return t;
    };
    const auto [out_c, out_f] = outputs(qs, DType::kBF16);
    const auto [lse_c, lse_f] = outputs(ls, DType::kF32);
    const auto [dq_c, dq_f] = outputs(qs, DType::kBF16);
    const auto [dk_c, dk_f] = outputs(ks, DType::kBF16);
    const auto [dv_c, dv_f] = outputs(ks, DType::kBF16);
    run_fwd(Via::kCudnn, cudnn.ctx(), out_c, lse_c, q, k, v, params);
    run_fwd(Via::kFlash, flash.ctx(), out_f, lse_f, q, k, v, params);
    run_bwd(Via::kCudnn, cudnn.ctx(), dq_c, dk_c, dv_c, dout, q, k, v, out_f, lse_f, params);
    run_bwd(Via::kFlash, flash.ctx(), dq_f, dk_f, dv_f, dout, q, k, v, out_f, lse_f, params);
    const auto agree = [&](const Tensor& a, const Tensor& b, double rtol, const char* what) {
      test::expect_close(test::to_doubles(test::to_host(host, a)),
                         test::to_doubles(test::to_host(host, b)), rtol, what);
    };
    agree(out_c, out_f, 2 * kTensorCoreTol, "out");
    agree(lse_c, lse_f, 1e-5, "lse");
    agree(dq_c, dq_f, 2 * kTensorCoreTol, "dq");
    agree(dk_c, dk_f, 2 * kTensorCoreTol, "dk");
    agree(dv_c, dv_f, 2 * kTensorCoreTol, "dv");
  }
}

// Queries shorter than keys, the last S of Sk positions (context parallelism's chunks against
// their key prefixes, parallel/context_parallel.h): causal aligned bottom-right, with windows that
// reach before the queries and ones that leave the first keys unseen (their dk, dv zero), GQA,
// tiles not full, and MLA's 192 / 128. Every path: the op in f32 (the fp32 kernel) and in bf16
// (its own choice), the tensor-core kernels and cuDNN (bottom-right diagonal) directly.
constexpr Case kQueriesLastCases[] = {
    {2, 64, 4, 2, 64, 64, 0, 128},     {1, 40, 8, 2, 128, 128, 0, 200},
    {2, 100, 4, 1, 64, 64, 17, 101},   {1, 64, 4, 2, 128, 128, 64, 256},
    {1, 16, 4, 4, 64, 64, 5, 200},     {2, 1, 4, 2, 64, 64, 0, 70},
    {2, 96, 4, 2, 128, 128, 130, 192},
};
constexpr Case kQueriesLastMlaCases[] = {{2, 32, 8, 2, 192, 128, 0, 96},
                                         {1, 64, 4, 4, 192, 128, 40, 256}};

TEST(CudaAttention, QueriesLastMatchReference) {
  uint64_t seed = 9000;
  for (const Case& c : kQueriesLastCases) {
    check(Via::kOp, DType::kF32, c, seed += 10, 1e-5);
    check(Via::kOp, DType::kBF16, c, seed += 10, 1e-2);
    check(Via::kFlash, DType::kBF16, c, seed += 10, kTensorCoreTol);
    if (c.s > 1) check(Via::kCudnn, DType::kBF16, c, seed += 10, kTensorCoreTol);
  }
  for (const Case& c : kQueriesLastMlaCases) {
    check(Via::kOp, DType::kF32, c, seed += 10, 1e-5);
    check(Via::kCudnn, DType::kBF16, c, seed += 10, kTensorCoreTol);
  }
}

TEST(CudaAttention, PathsChosen) {
  using cuda::AttentionPath;
  const char* env = std::getenv("TMT_ATTENTION");
  const bool forced = env != nullptr && *env != '\0';
  const AttentionShape bench{1, 4096, 16, 4, 128, 128, DType::kBF16};
  const AttentionShape mla{2, 77, 8, 2, 192, 128, DType::kBF16};
  const AttentionShape f32{1, 4096, 16, 4, 128, 128, DType::kF32};
  const AttentionParams causal{1.0 / std::sqrt(128.0), 0};
  for (cuda::AttentionPass pass : kPasses) {
    const AttentionPath b = cuda::attention_path(pass, bench, causal, {});
    const AttentionPath m = cuda::attention_path(pass, mla, causal, {});
    std::printf("%s: bench shape -> %s, Dqk 192 / Dv 128 -> %s (TMT_ATTENTION=%s)\n",
                pass_name(pass), cuda::attention_path_name(b), cuda::attention_path_name(m),
                forced ? env : "");
    EXPECT_EQ(cuda::attention_path(pass, f32, causal, {}), AttentionPath::kFp32);
    if (!forced) {
      EXPECT_EQ(b, AttentionPath::kCudnn);
      EXPECT_EQ(m, AttentionPath::kCudnn);
    }
  }
}

// The benchmark's shape through cuDNN and through the flash kernels, where a full CPU reference
// would take minutes: out, lse and dq on sampled query rows (every head), dk and dv on sampled keys
// (every kv head), against a reference in double computed for those rows alone. The backward's
// reference takes the GPU's out and lse, the inputs the backward differentiates.
TEST(CudaAttention, LongSequenceSampledRows) {
  constexpr int64_t kS = 4096, kH = 16, kHk = 4, kDh = 128, kGroup = kH / kHk;
  const std::vector<int64_t> sampled = {0,    1,    2,    63,   64,   65,   127,  128,
                                        1000, 1023, 2047, 2048, 3001, 4031, 4094, 4095};
  const Shape qs{1, kS, kH, kDh}, ks{1, kS, kHk, kDh}, ls{1, kH, kS};
  Arena host(Device::kCpu, size_t{640} << 20, "host");
  Arena dev(Device::kCuda, size_t{256} << 20, "device");
  uint64_t seed = 77;
  for (const auto& [via, window] :
       {std::pair{Via::kCudnn, int64_t{0}}, std::pair{Via::kCudnn, int64_t{1000}},
        std::pair{Via::kFlash, int64_t{0}}, std::pair{Via::kFlash, int64_t{1000}}}) {
    const std::string name = std::string(via_name(via)) +
                             " bf16 B=1 S=4096 H=16 Hk=4 Dh=128 window=" + std::to_string(window);
    SCOPED_TRACE(name);
    std::printf("%s (sampled rows)\n", name.c_str());
    const size_t host_mark = host.mark(), dev_mark = dev.mark();
    const AttentionParams params{1.0 / std::sqrt(static_cast<double>(kDh)), window};
    const AttentionShape problem{1, kS, kH, kHk, kDh, kDh, DType::kBF16};
    ASSERT_TRUE(takes(via, problem, params));
    CaseContext gpu(via, problem, params);
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
    run_fwd(via, gpu.ctx(), outd, lsed, qd, kd, vd, params);
    run_bwd(via, gpu.ctx(), dqd, dkd, dvd, doutd, qd, kd, vd, outd, lsed, params);
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
