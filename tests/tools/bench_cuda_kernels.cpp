// Times every CUDA kernel, forward and backward apart, at the shapes of one layer of a
// Mixtral-shaped model on one GPU (d_model D = 2048, H = 16 heads, Hk = 4 kv heads, Dh = 128,
// E = 8 experts top-K = 2, expert FFN F = 5632, vocab V = 32000, S = 4096, micro-batch 1, so
// T = 4096 tokens and R = T·K = 8192 expert rows), bf16 wherever the op takes it; attention also at
// Mixtral 8x7B's own shape (H 32, Hk 8), through cuDNN and through our flash kernels side by side
// (kernels/cuda/attention.h: the op itself takes cuDNN where it can). Prints one table:
// time (median of kRuns after kWarmup, CUDA events around each call, L2 flushed before each), the
// achieved rate, the floor and the share of it reached. The floor of an op is the larger of
//   FLOPs / 989 TFLOP/s   (bf16 dense tensor-core peak of the H100 SXM and of the H200 alike)
//   bytes / 3.35 TB/s     (H100 SXM HBM3), bytes = each input read once + each output written once
// and the achieved column shows TFLOP/s for ops whose floor is the FLOP term, GB/s otherwise.
// (989 TFLOP/s is also the H200's datasheet figure; its HBM3e gives 4.8 TB/s, so on an H200 the
// byte floors are conservative.)
//
// The expert GEMMs also one pass at a time through each path of kernels/cuda/grouped_gemm.h —
// CUTLASS in each tile configuration, cublasGemmGroupedBatchedEx, the cuBLASLt loop — side by side,
// bf16 operands and an f32 dW (training's mixed precision), balanced counts, at this model's
// shapes and at Mixtral 8x7B's (8 experts local at ep 1, T = 4096 top-2 so R = 8192, w13 K 4096
// N 2·14336, w2 K 14336 N 4096). A path that cannot take a pass prints why instead of a time.
// FP8 (blockwise, kernels/cuda/fp8_gemm_sm90.h) beside bf16: every expert row of w13 as one dense
// GEMM, forward, dgrad and wgrad, with the quantize kernels they need; the FP8 rows' floor is the
// FP8 peak (1979 TFLOP/s dense).
// Built only with the CUDA backend; exits 77 without a GPU.
//   build/tests/bench_cuda_kernels
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/base/arena.h"
#include "kernels/base/check.h"
#include "kernels/base/workspace.h"
#include "kernels/cross_entropy.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/flash_attention.h"
#include "kernels/cuda/fp8_gemm_sm90.h"
#include "kernels/cuda/fp8_quantize.h"
#include "kernels/cuda/grouped_gemm.h"
#include "kernels/cuda/runtime.h"
#include "kernels/grouped_linear.h"
#include "kernels/linear.h"
#include "kernels/moe_dispatch.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/router.h"
#include "kernels/swiglu.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

#define BENCH_CUDA(call)                                                        \
  do {                                                                          \
    const cudaError_t bench_err_ = (call);                                      \
    TMT_CHECK(bench_err_ == cudaSuccess, "{}", cudaGetErrorString(bench_err_)); \
  } while (0)

constexpr double kPeakFlops = 989e12;      // H100 SXM and H200, bf16 dense, tensor cores
constexpr double kPeakFp8Flops = 1979e12;  // the same, FP8 dense
constexpr double kPeakBytes = 3.35e12;     // H100 SXM, HBM3
constexpr int kWarmup = 3;
constexpr int kRuns = 20;
constexpr size_t kFlushBytes = size_t{256} << 20;  // > the H100's 50 MB L2

// The model's shapes.
constexpr int64_t kT = 4096, kD = 2048, kH = 16, kHk = 4, kDh = 128, kE = 8, kK = 2, kF = 5632,
                  kV = 32000, kR = kT * kK;
constexpr int64_t kAdamParams = 100'000'000;
// attention, bf16 causal: the model's layer and Mixtral 8x7B's (32 query heads, 8 kv heads).
constexpr AttentionShape kAttentionShapes[] = {{1, kT, kH, kHk, kDh, kDh, DType::kBF16},
                                               {1, kT, 32, 8, kDh, kDh, DType::kBF16}};
const AttentionParams kCausal{1.0 / std::sqrt(double(kDh)), 0};
constexpr int64_t kBf16 = 2, kF32 = 4, kI32 = 4;  // bytes per element

struct Row {
  std::string op, pass, shape;
  double ms, flops, bytes;
  double peak_flops = kPeakFlops;  // the floor's FLOP rate: bf16's, or FP8's
};

class Bench {
 public:
  explicit Bench(Arena& dev)
      : flush_(dev.alloc(DType::kI32, {static_cast<int64_t>(kFlushBytes / 4)})) {
    BENCH_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    BENCH_CUDA(cudaEventCreate(&start_));
    BENCH_CUDA(cudaEventCreate(&stop_));
    // What the timed ops borrow at the model's shapes (kernels/base/workspace.h).
    constexpr Device kCuda = Device::kCuda;
    workspace_.reserve(linear_workspace_bytes(kCuda));
    workspace_.reserve(grouped_linear_workspace_bytes(kCuda, kE));
    // attention through each path directly, at both shapes (cuDNN's workspace depends on them)
    for (const AttentionShape& shape : kAttentionShapes) {
      for (cuda::AttentionPass pass :
           {cuda::AttentionPass::kForward, cuda::AttentionPass::kBackward}) {
        workspace_.reserve(cuda::cudnn_attention_workspace_bytes(pass, shape, kCausal));
      }
      workspace_.reserve(
          cuda::flash_attention_bwd_workspace_bytes(shape.batch, shape.seq, shape.heads));
    }
    workspace_.reserve(moe_dispatch_workspace_bytes(kCuda, kR));
    workspace_.allocate(kCuda);
  }
  ~Bench() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
    cudaStreamDestroy(stream_);
  }
  Bench(const Bench&) = delete;
  Bench& operator=(const Bench&) = delete;

  Context ctx() { return Context{Device::kCuda, stream_, nullptr, &workspace_}; }

  // The median time of `fn` in ms: kWarmup calls, then kRuns, each after a write over a buffer
  // larger than L2 (so every run starts from device memory, as the floor assumes).
  double time_ms(const std::function<void()>& fn) {
    for (int i = 0; i < kWarmup; ++i) fn();
    std::vector<double> ms;
    for (int i = 0; i < kRuns; ++i) {
      BENCH_CUDA(cudaMemsetAsync(flush_.data, i & 0xff, kFlushBytes, stream_));
      BENCH_CUDA(cudaEventRecord(start_, stream_));
      fn();
      BENCH_CUDA(cudaEventRecord(stop_, stream_));
      BENCH_CUDA(cudaEventSynchronize(stop_));
      BENCH_CUDA(cudaGetLastError());
      float elapsed = 0;
      BENCH_CUDA(cudaEventElapsedTime(&elapsed, start_, stop_));
      ms.push_back(elapsed);
    }
    std::sort(ms.begin(), ms.end());
    return 0.5 * (ms[(kRuns - 1) / 2] + ms[kRuns / 2]);
  }

  void add(std::string op, std::string pass, std::string shape, double flops, double bytes,
           const std::function<void()>& fn, double peak_flops = kPeakFlops) {
    const double ms = time_ms(fn);
    rows_.push_back(
        {std::move(op), std::move(pass), std::move(shape), ms, flops, bytes, peak_flops});
    print(rows_.back());
  }

  // A row without a time: the op cannot run this case, and why.
  static void print_skipped(const std::string& op, const std::string& pass,
                            const std::string& shape, const std::string& why) {
    std::printf("| %-28s | %-7s | %-44s | not run: %s\n", op.c_str(), pass.c_str(), shape.c_str(),
                why.c_str());
    std::fflush(stdout);
  }

  static void print_header() {
    std::printf("| %-28s | %-7s | %-44s | %9s | %16s | %8s | %7s |\n", "op", "pass", "shape",
                "time ms", "achieved", "floor ms", "% floor");
    std::printf("|%s|%s|%s|%s|%s|%s|%s|\n", std::string(30, '-').c_str(),
                std::string(9, '-').c_str(), std::string(46, '-').c_str(),
                std::string(11, '-').c_str(), std::string(18, '-').c_str(),
                std::string(10, '-').c_str(), std::string(9, '-').c_str());
    std::fflush(stdout);
  }

 private:
  static void print(const Row& r) {
    const double flop_s = r.flops / r.peak_flops, byte_s = r.bytes / kPeakBytes;
    const double floor_ms = 1e3 * std::max(flop_s, byte_s);
    char achieved[32];
    if (flop_s >= byte_s) {
      std::snprintf(achieved, sizeof achieved, "%.1f TFLOP/s", r.flops / (r.ms * 1e-3) / 1e12);
    } else {
      std::snprintf(achieved, sizeof achieved, "%.0f GB/s", r.bytes / (r.ms * 1e-3) / 1e9);
    }
    std::printf("| %-28s | %-7s | %-44s | %9.4f | %16s | %8.4f | %6.1f%% |\n", r.op.c_str(),
                r.pass.c_str(), r.shape.c_str(), r.ms, achieved, floor_ms, 100.0 * floor_ms / r.ms);
    std::fflush(stdout);
  }

  Tensor flush_;
  Workspace workspace_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
  std::vector<Row> rows_;
};

// A device tensor of uniform random values in [lo, hi): a host block of fresh values (up to 4M
// elements) copied over the tensor as many times as it takes. Never zeros (they can run faster).
Tensor random_tensor(Arena& dev, DType dtype, Shape shape, uint64_t seed, double lo = -1.0,
                     double hi = 1.0) {
  Tensor t = dev.alloc(dtype, shape);
  const int64_t block = std::min<int64_t>(t.numel(), int64_t{1} << 22);
  Arena host(Device::kCpu, Arena::footprint(dtype, {block}) + 4096, "bench host");
  const Tensor h = host.alloc(dtype, {block});
  test::fill_uniform(h, seed, lo, hi);
  const size_t block_bytes = h.nbytes();
  auto* dst = static_cast<std::byte*>(t.data);
  for (size_t at = 0; at < t.nbytes(); at += block_bytes) {
    cuda::copy(dst + at, h.data, std::min(block_bytes, t.nbytes() - at));
  }
  return t;
}

// A device i32 tensor with these values.
Tensor int_tensor(Arena& dev, const std::vector<int32_t>& values, Shape shape) {
  Tensor t = dev.alloc(DType::kI32, shape);
  TMT_CHECK(t.numel() == static_cast<int64_t>(values.size()), "int_tensor: {} values for {}",
            values.size(), t.str());
  cuda::copy(t.data, values.data(), t.nbytes());
  return t;
}

// Each token's K = 2 experts: tokens in a random order take (i mod E, i mod E + E/2), so every
// expert gets exactly R / E = 1024 rows and no token picks one expert twice.
std::vector<int32_t> balanced_choices(uint64_t seed) {
  std::vector<int32_t> order(kT);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
  std::vector<int32_t> idx(kT * kK);
  for (int64_t i = 0; i < kT; ++i) {
    const auto first = static_cast<int32_t>(i % kE);
    idx[order[i] * kK] = first;
    idx[order[i] * kK + 1] = static_cast<int32_t>((first + kE / 2) % kE);
  }
  return idx;
}

std::string dims(std::initializer_list<int64_t> d) {
  std::string s = "[";
  for (int64_t x : d) s += (s.size() > 1 ? " x " : "") + std::to_string(x);
  return s + "]";
}

void bench_linear(Bench& b, Arena& dev, const char* name, int64_t n) {
  // fwd 2·T·N·D FLOPs; bytes 2·(T·D + N·D + T·N). bwd dx = dy W and dW += dyᵀ x: 4·T·N·D FLOPs;
  // bytes 2·(T·N + N·D + T·D) read, 2·T·D written, 2·N·D read and written (dW accumulates).
  const size_t mark = dev.mark();
  const Tensor x = random_tensor(dev, DType::kBF16, {kT, kD}, 1);
  const Tensor w = random_tensor(dev, DType::kBF16, {n, kD}, 2, -0.02, 0.02);
  const Tensor y = dev.alloc(DType::kBF16, {kT, n});
  const Tensor dy = random_tensor(dev, DType::kBF16, {kT, n}, 3);
  const Tensor dx = dev.alloc(DType::kBF16, {kT, kD});
  const Tensor dw = dev.alloc(DType::kBF16, {n, kD});
  const double mnk = static_cast<double>(kT) * n * kD;
  const std::string shape = dims({kT, kD}) + " x " + dims({n, kD}) + "^T";
  b.add(name, "fwd", shape, 2 * mnk, kBf16 * double(kT * kD + n * kD + kT * n),
        [&] { linear_fwd(b.ctx(), y, x, w); });
  b.add(name, "bwd", shape, 4 * mnk, kBf16 * double(kT * n + 2 * n * kD + 2 * kT * kD),
        [&] { linear_bwd(b.ctx(), dx, dw, dy, x, w); });
  dev.reset(mark);
}

void bench_grouped_linear(Bench& b, Arena& dev, const char* name, int64_t n, int64_t k) {
  // R rows, R / E per expert, through [E, N, K] weights: fwd 2·R·N·K FLOPs, bwd twice that;
  // bytes as for linear with E weight matrices.
  const size_t mark = dev.mark();
  const std::vector<int64_t> counts(kE, kR / kE);
  const Tensor x = random_tensor(dev, DType::kBF16, {kR, k}, 4);
  const Tensor w = random_tensor(dev, DType::kBF16, {kE, n, k}, 5, -0.02, 0.02);
  const Tensor y = dev.alloc(DType::kBF16, {kR, n});
  const Tensor dy = random_tensor(dev, DType::kBF16, {kR, n}, 6);
  const Tensor dx = dev.alloc(DType::kBF16, {kR, k});
  const Tensor dw = dev.alloc(DType::kBF16, {kE, n, k});
  const double mnk = static_cast<double>(kR) * n * k;
  const std::string shape = dims({kR, k}) + " x " + dims({kE, n, k}) + "^T";
  b.add(name, "fwd", shape, 2 * mnk, kBf16 * double(kR * k + kE * n * k + kR * n),
        [&] { grouped_linear_fwd(b.ctx(), y, x, w, counts); });
  b.add(name, "bwd", shape, 4 * mnk, kBf16 * double(kR * n + 2 * kE * n * k + 2 * kR * k),
        [&] { grouped_linear_bwd(b.ctx(), dx, dw, dy, x, w, counts); });
  dev.reset(mark);
}

// One expert projection: E experts of [N, K], R rows split evenly.
struct ExpertShape {
  const char* name;
  int64_t experts, rows, n, k;
};

// Each pass of one projection through each grouped-GEMM path. FLOPs 2·R·N·K a pass; bytes: fwd
// x, W read and y written (bf16); dgrad dy, W read and dx written; wgrad dy, x read (bf16) and
// dW read and written (f32).
void bench_grouped_paths(Bench& b, Arena& dev, const ExpertShape& s) {
  using cuda::GroupedPass;
  const size_t mark = dev.mark();
  const int64_t e = s.experts, r = s.rows, n = s.n, k = s.k;
  const std::vector<int64_t> counts(static_cast<size_t>(e), r / e);
  const Tensor x = random_tensor(dev, DType::kBF16, {r, k}, 40);
  const Tensor w = random_tensor(dev, DType::kBF16, {e, n, k}, 41, -0.02, 0.02);
  const Tensor dy = random_tensor(dev, DType::kBF16, {r, n}, 42);
  const Tensor dw = random_tensor(dev, DType::kF32, {e, n, k}, 43, -1e-3, 1e-3);
  const Tensor y = dev.alloc(DType::kBF16, {r, n});
  const Tensor dx = dev.alloc(DType::kBF16, {r, k});
  const double mnk = static_cast<double>(r) * n * k, enk = double(e * n * k);
  const std::string shape = dims({r, k}) + " x " + dims({e, n, k}) + "^T";

  struct Path {
    const char* label;
    cuda::GroupedGemmChoice choice;
  };
  const Path paths[] = {
      {"cutlass 128x256",
       {cuda::GroupedGemmPath::kCutlass, cuda::CutlassTile::kCooperative128x256}},
      {"cutlass 128x128",
       {cuda::GroupedGemmPath::kCutlass, cuda::CutlassTile::kCooperative128x128}},
      {"cutlass pingpong", {cuda::GroupedGemmPath::kCutlass, cuda::CutlassTile::kPingpong128x128}},
      {"cublas grouped", {cuda::GroupedGemmPath::kCublas, {}}},
      {"cublaslt loop", {cuda::GroupedGemmPath::kLoop, {}}},
  };
  struct Pass {
    GroupedPass pass;
    const char* name;
    Tensor out, a, b;
    double bytes;
  };
  const Pass passes[] = {
      {GroupedPass::kFwd, "fwd", y, x, w, kBf16 * double(r * k + r * n) + kBf16 * enk},
      {GroupedPass::kDgrad, "dgrad", dx, dy, w, kBf16 * double(r * n + r * k) + kBf16 * enk},
      {GroupedPass::kWgrad, "wgrad", dw, dy, x, kBf16 * double(r * n + r * k) + 2 * kF32 * enk},
  };
  // The loop: one cuBLASLt call an expert (what grouped_linear falls back to).
  const auto loop = [&](GroupedPass pass) {
    for (int64_t i = 0; i < e; ++i) {
      const int64_t first = i * (r / e), last = first + r / e;
      const Tensor we = w.slice(i, i + 1).view({n, k}), dwe = dw.slice(i, i + 1).view({n, k});
      if (pass == GroupedPass::kFwd) {
        linear_fwd(b.ctx(), y.slice(first, last), x.slice(first, last), we);
      } else if (pass == GroupedPass::kDgrad) {
        linear_bwd(b.ctx(), dx.slice(first, last), Tensor{}, dy.slice(first, last),
                   x.slice(first, last), we);
      } else {
        linear_bwd(b.ctx(), Tensor{}, dwe, dy.slice(first, last), x.slice(first, last), we);
      }
    }
  };
  for (const Pass& p : passes) {
    for (const Path& path : paths) {
      const std::string op = std::string(s.name) + " " + path.label;
      if (path.choice.path == cuda::GroupedGemmPath::kLoop) {
        b.add(op, p.name, shape, 2 * mnk, p.bytes, [&] { loop(p.pass); });
        continue;
      }
      std::string why;
      if (!cuda::grouped_gemm_supported(path.choice.path, p.pass, p.out, p.a, p.b, e, &why) ||
          !cuda::grouped_gemm(b.ctx(), path.choice, p.pass, p.out, p.a, p.b, counts)) {
        Bench::print_skipped(op, p.name, shape, why.empty() ? "declined by cuBLAS" : why);
        continue;
      }
      b.add(op, p.name, shape, 2 * mnk, p.bytes,
            [&] { cuda::grouped_gemm(b.ctx(), path.choice, p.pass, p.out, p.a, p.b, counts); });
    }
  }
  dev.reset(mark);
}

// One linear layer's three GEMMs in FP8 (kernels/cuda/fp8_gemm_sm90.h, floor at the FP8 peak)
// beside the same GEMMs in bf16 through cuBLASLt (linear.h: fwd, and bwd = dgrad + wgrad), and
// the quantize kernels each FP8 pass needs (fp8_quantize.h, floor by bytes: bf16 read, e4m3 and
// fp32 scales written). y = x Wᵀ with x [M, K], W [N, K]; FLOPs 2·M·N·K a GEMM; FP8 bytes: codes
// read once, D written (bf16), wgrad's f32 dW read and written.
void bench_fp8_linear(Bench& b, Arena& dev, const char* name, int64_t m, int64_t n, int64_t k) {
  const size_t mark = dev.mark();
  const std::string shape = dims({m, k}) + " x " + dims({n, k}) + "^T";
  const double mnk = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const Tensor x = random_tensor(dev, DType::kBF16, {m, k}, 1);
  const Tensor w = random_tensor(dev, DType::kBF16, {n, k}, 2, -0.02, 0.02);
  const Tensor dy = random_tensor(dev, DType::kBF16, {m, n}, 3, -1e-3, 1e-3);
  const Tensor y = dev.alloc(DType::kBF16, {m, n});
  const Tensor dx = dev.alloc(DType::kBF16, {m, k});
  const Tensor dw = dev.alloc(DType::kF32, {n, k});
  BENCH_CUDA(cudaMemset(dw.data, 0, dw.nbytes()));
  const std::string bf16 = std::string(name) + " bf16";
  b.add(bf16, "fwd", shape, 2 * mnk, kBf16 * double(m * k + n * k + m * n),
        [&] { linear_fwd(b.ctx(), y, x, w); });
  b.add(bf16, "bwd", shape, 4 * mnk,
        kBf16 * double(m * n + n * k + 2 * m * k) + 2 * kF32 * double(n * k),
        [&] { linear_bwd(b.ctx(), dx, dw, dy, x, w); });
  if (!cuda::fp8_gemm_sm90_compiled()) {
    Bench::print_skipped(std::string(name) + " fp8", "all", shape, "built without sm_90a");
    dev.reset(mark);
    return;
  }
  const auto ceil128 = [](int64_t v) { return (v + 127) / 128; };
  const auto codes = [&](int64_t r, int64_t c) { return dev.alloc(DType::kF8E4M3, {r, c}); };
  const auto scales = [&](int64_t count) { return dev.alloc(DType::kF32, {count}); };
  const Tensor x_q = codes(m, k), x_s = scales(ceil128(k) * m);
  const Tensor dy_q = codes(m, n), dy_s = scales(ceil128(n) * m);
  const Tensor w_q = codes(n, k), wt_q = codes(k, n);
  const Tensor w_s = scales(ceil128(n) * ceil128(k)), wt_s = scales(ceil128(n) * ceil128(k));
  const Tensor dyt_q = codes(n, m), dyt_s = scales(ceil128(m) * n);
  const Tensor xt_q = codes(k, m), xt_s = scales(ceil128(m) * k);
  const Context ctx = b.ctx();
  cuda::fp8_quantize_rows(ctx, x_q, x_s, x, false);
  cuda::fp8_quantize_rows(ctx, dy_q, dy_s, dy, false);
  cuda::fp8_quantize_blocks(ctx, w_q, w_s, wt_q, wt_s, w, false);
  cuda::fp8_quantize_columns(ctx, dyt_q, dyt_s, dy, false);
  cuda::fp8_quantize_columns(ctx, xt_q, xt_s, x, false);
  const std::string fp8 = std::string(name) + " fp8";
  const auto quantize_bytes = [](int64_t elements) {
    return double(elements) * (kBf16 + 1) + double(elements) / 128 * kF32;
  };
  b.add(fp8 + " quantize x", "rows", dims({m, k}), 0, quantize_bytes(m * k),
        [&] { cuda::fp8_quantize_rows(ctx, x_q, x_s, x, false); });
  b.add(fp8 + " quantize x", "columns", dims({m, k}), 0, quantize_bytes(m * k),
        [&] { cuda::fp8_quantize_columns(ctx, xt_q, xt_s, x, false); });
  b.add(fp8 + " quantize W", "blocks+T", dims({n, k}), 0, double(n * k) * (kBf16 + 2),
        [&] { cuda::fp8_quantize_blocks(ctx, w_q, w_s, wt_q, wt_s, w, false); });
  struct Pass {
    const char* pass;
    cuda::Fp8Gemm g;
    double bytes;
  };
  const auto stream = static_cast<void*>(ctx.stream);
  const std::vector<Pass> passes = {
      {"fwd",
       {.kind = cuda::Fp8GemmKind::kRowsByBlocks,
        .m = m,
        .n = n,
        .k = k,
        .a = x_q.data,
        .a_scales = x_s.ptr<float>(),
        .b = w_q.data,
        .b_scales = w_s.ptr<float>(),
        .d = y.data,
        .stream = stream},
       double(m * k + n * k) + kBf16 * double(m * n)},
      {"dgrad",
       {.kind = cuda::Fp8GemmKind::kRowsByBlocks,
        .m = m,
        .n = k,
        .k = n,
        .a = dy_q.data,
        .a_scales = dy_s.ptr<float>(),
        .b = wt_q.data,
        .b_scales = wt_s.ptr<float>(),
        .d = dx.data,
        .stream = stream},
       double(m * n + n * k) + kBf16 * double(m * k)},
      {"wgrad",
       {.kind = cuda::Fp8GemmKind::kRowsByRows,
        .m = n,
        .n = k,
        .k = m,
        .a = dyt_q.data,
        .a_scales = dyt_s.ptr<float>(),
        .b = xt_q.data,
        .b_scales = xt_s.ptr<float>(),
        .d = dw.data,
        .accumulate = true,
        .stream = stream},
       double(m * n + m * k) + 2 * kF32 * double(n * k)},
  };
  for (const Pass& p : passes) {
    if (!cuda::fp8_gemm_supported(p.g)) {
      Bench::print_skipped(fp8, p.pass, shape, "CUTLASS cannot implement it");
      continue;
    }
    const Tensor ws =
        dev.alloc(DType::kF8E4M3,
                  {static_cast<int64_t>(std::max<size_t>(cuda::fp8_gemm_workspace(p.g), 16))});
    b.add(
        fp8, p.pass, shape, 2 * mnk, p.bytes, [&] { cuda::fp8_gemm(p.g, ws.data, ws.nbytes()); },
        kPeakFp8Flops);
  }
  dev.reset(mark);
}

void bench_attention(Bench& b, Arena& dev, const AttentionShape& shape) {
  // bf16 at Dh 128, causal, through cuDNN's fused SDPA and through our tensor-core kernels
  // (kernels/cuda/flash_attention.cu), called directly, rows side by side. Causal: query i sees
  // i + 1 keys, Σ = S(S+1)/2 pairs per head, about half of full attention's S². fwd: q·k and p·v,
  // 4·Dh FLOPs a pair; bwd: q·k recomputed, dp = dout·v, dv, dq, dk, 10·Dh a pair (2.5 times the
  // forward; visible pairs only: the hidden half of each diagonal tile, which the kernels compute
  // and mask, is not counted). Bytes: fwd reads q, k, v and writes out, lse; bwd reads q, k, v,
  // out, dout, lse and writes dq, dk, dv.
  const size_t mark = dev.mark();
  const int64_t s = shape.seq, h = shape.heads, hk = shape.kv_heads, dh = shape.head_dim_qk;
  const Tensor q = random_tensor(dev, DType::kBF16, {1, s, h, dh}, 7);
  const Tensor k = random_tensor(dev, DType::kBF16, {1, s, hk, dh}, 8);
  const Tensor v = random_tensor(dev, DType::kBF16, {1, s, hk, dh}, 9);
  const Tensor out = dev.alloc(DType::kBF16, {1, s, h, dh});
  const Tensor lse = dev.alloc(DType::kF32, {1, h, s});
  const Tensor dout = random_tensor(dev, DType::kBF16, {1, s, h, dh}, 10);
  const Tensor dq = dev.alloc(DType::kBF16, {1, s, h, dh});
  const Tensor dk = dev.alloc(DType::kBF16, {1, s, hk, dh});
  const Tensor dv = dev.alloc(DType::kBF16, {1, s, hk, dh});
  const AttentionParams& p = kCausal;
  const double pairs = double(h) * s * (s + 1) / 2;
  const double q_bytes = kBf16 * double(s * h * dh), kv_bytes = kBf16 * double(s * hk * dh),
               lse_bytes = kF32 * double(h * s);
  const double fwd_flops = 4 * double(dh) * pairs, bwd_flops = 10 * double(dh) * pairs;
  const double fwd_bytes = 2 * q_bytes + 2 * kv_bytes + lse_bytes;
  const double bwd_bytes = 4 * q_bytes + 4 * kv_bytes + lse_bytes;
  const std::string name = "B 1, S " + std::to_string(s) + ", H " + std::to_string(h) + ", Hk " +
                           std::to_string(hk) + ", Dh " + std::to_string(dh) + ", causal";
  // A shape a path does not take gets a line saying so instead of its row.
  std::string why;
  bool cudnn = true;
  for (cuda::AttentionPass pass : {cuda::AttentionPass::kForward, cuda::AttentionPass::kBackward}) {
    cudnn = cudnn && cuda::cudnn_attention_supported(pass, shape, p, &why);
  }
  const bool flash = cuda::flash_attention_supported(DType::kBF16, dh, dh, {});
  if (!cudnn) {
    std::printf("| attention cudnn | -       | %-44s | cuDNN refuses it: %s\n", name.c_str(),
                why.c_str());
  }
  if (!flash) {
    std::printf("| attention flash | -       | %-44s | the flash kernels do not take it\n",
                name.c_str());
  }
  // Forward rows, then backward rows, cuDNN's above ours; the backwards start from the out and lse
  // the forwards left.
  if (cudnn) {
    b.add("attention cudnn", "fwd", name, fwd_flops, fwd_bytes,
          [&] { cuda::cudnn_attention_fwd(b.ctx(), out, lse, q, k, v, p); });
  }
  if (flash) {
    b.add("attention flash", "fwd", name, fwd_flops, fwd_bytes,
          [&] { cuda::flash_attention_fwd(b.ctx(), out, lse, q, k, v, p); });
  }
  if (cudnn) {
    b.add("attention cudnn", "bwd", name, bwd_flops, bwd_bytes,
          [&] { cuda::cudnn_attention_bwd(b.ctx(), dq, dk, dv, dout, q, k, v, out, lse, p); });
  }
  if (flash) {
    b.add("attention flash", "bwd", name, bwd_flops, bwd_bytes,
          [&] { cuda::flash_attention_bwd(b.ctx(), dq, dk, dv, dout, q, k, v, out, lse, p); });
  }
  dev.reset(mark);
}

void bench_rmsnorm(Bench& b, Arena& dev) {
  // fwd reads x, weight, writes y, rstd (f32); bwd reads dy, x, weight, rstd, writes dx and
  // reads and writes dweight (+=). A few FLOPs an element: memory-bound.
  const size_t mark = dev.mark();
  const Tensor x = random_tensor(dev, DType::kBF16, {kT, kD}, 11);
  const Tensor w = random_tensor(dev, DType::kBF16, {kD}, 12, 0.5, 1.5);
  const Tensor y = dev.alloc(DType::kBF16, {kT, kD});
  const Tensor rstd = dev.alloc(DType::kF32, {kT});
  const Tensor dy = random_tensor(dev, DType::kBF16, {kT, kD}, 13);
  const Tensor dx = dev.alloc(DType::kBF16, {kT, kD});
  const Tensor dw = dev.alloc(DType::kBF16, {kD});
  const double td = double(kT * kD);
  b.add("rmsnorm", "fwd", dims({kT, kD}), 0, kBf16 * (2 * td + kD) + kF32 * kT,
        [&] { rmsnorm_fwd(b.ctx(), y, rstd, x, w, 1e-5); });
  b.add("rmsnorm", "bwd", dims({kT, kD}), 0, kBf16 * (3 * td + 3 * kD) + kF32 * kT,
        [&] { rmsnorm_bwd(b.ctx(), dx, dw, dy, x, w, rstd); });
  dev.reset(mark);
}

void bench_swiglu(Bench& b, Arena& dev) {
  // On the experts' rows: gu [R, 2F] -> h [R, F]. fwd bytes 2·(2RF + RF); bwd reads dh, gu and
  // writes dgu: 2·(RF + 2RF + 2RF).
  const size_t mark = dev.mark();
  const Tensor gu = random_tensor(dev, DType::kBF16, {kR, 2 * kF}, 14, -4.0, 4.0);
  const Tensor h = dev.alloc(DType::kBF16, {kR, kF});
  const Tensor dh = random_tensor(dev, DType::kBF16, {kR, kF}, 15);
  const Tensor dgu = dev.alloc(DType::kBF16, {kR, 2 * kF});
  const double rf = double(kR * kF);
  b.add("swiglu", "fwd", dims({kR, 2 * kF}) + " -> " + dims({kR, kF}), 0, kBf16 * 3 * rf,
        [&] { swiglu_fwd(b.ctx(), h, gu); });
  b.add("swiglu", "bwd", dims({kR, 2 * kF}) + " -> " + dims({kR, kF}), 0, kBf16 * 5 * rf,
        [&] { swiglu_bwd(b.ctx(), dgu, dh, gu); });
  dev.reset(mark);
}

void bench_rope(Bench& b, Arena& dev) {
  // q [T, H, Dh] and k [T, Hk, Dh] turned (two calls), bf16 tables [S, Dh/2]: reads q, k,
  // positions, both tables, writes q', k'. The backward moves the same bytes.
  const size_t mark = dev.mark();
  const Tensor q = random_tensor(dev, DType::kBF16, {kT, kH, kDh}, 16);
  const Tensor k = random_tensor(dev, DType::kBF16, {kT, kHk, kDh}, 17);
  const Tensor q2 = dev.alloc(DType::kBF16, {kT, kH, kDh});
  const Tensor k2 = dev.alloc(DType::kBF16, {kT, kHk, kDh});
  const Tensor cos = dev.alloc(DType::kBF16, {kT, kDh / 2});
  const Tensor sin = dev.alloc(DType::kBF16, {kT, kDh / 2});
  std::vector<int32_t> pos(kT);
  std::iota(pos.begin(), pos.end(), 0);
  const Tensor positions = int_tensor(dev, pos, {kT});
  RopeParams p;
  p.head_dim = kDh;
  p.theta = 1e6;
  rope_tables(b.ctx(), cos, sin, p);
  const double bytes = kBf16 * (2.0 * kT * (kH + kHk) * kDh + 2.0 * kT * kDh / 2) + kI32 * kT;
  const std::string shape = "q " + dims({kT, kH, kDh}) + ", k " + dims({kT, kHk, kDh});
  b.add("rope", "fwd", shape, 0, bytes, [&] {
    rope_fwd(b.ctx(), q2, q, positions, cos, sin);
    rope_fwd(b.ctx(), k2, k, positions, cos, sin);
  });
  b.add("rope", "bwd", shape, 0, bytes, [&] {
    rope_bwd(b.ctx(), q2, q, positions, cos, sin);
    rope_bwd(b.ctx(), k2, k, positions, cos, sin);
  });
  dev.reset(mark);
}

void bench_cross_entropy(Bench& b, Arena& dev) {
  // Fused loss and gradient: reads logits [T, V] bf16 and targets, writes dlogits [T, V] bf16 and
  // the losses (f32).
  const size_t mark = dev.mark();
  const Tensor logits = random_tensor(dev, DType::kBF16, {kT, kV}, 18, -4.0, 4.0);
  const Tensor dlogits = dev.alloc(DType::kBF16, {kT, kV});
  const Tensor losses = dev.alloc(DType::kF32, {kT});
  std::vector<int32_t> tg(kT);
  std::mt19937 rng(19);
  for (auto& t : tg) t = static_cast<int32_t>(rng() % kV);
  const Tensor targets = int_tensor(dev, tg, {kT});
  b.add("cross_entropy", "fwd+bwd", dims({kT, kV}) + " fused", 0,
        kBf16 * 2.0 * kT * kV + (kI32 + kF32) * kT,
        [&] { cross_entropy(b.ctx(), losses, dlogits, logits, targets, 1.0 / kT); });
  dev.reset(mark);
}

void bench_router(Bench& b, Arena& dev) {
  // f32. fwd reads logits [T, E], writes probs [T, E], topk_idx, topk_w [T, K], lse [T]. bwd reads
  // dtopk_w, dprobs, dlse, probs, topk_idx, topk_w, logits and writes dlogits.
  const size_t mark = dev.mark();
  const Tensor logits = random_tensor(dev, DType::kF32, {kT, kE}, 20, -2.0, 2.0);
  const Tensor probs = dev.alloc(DType::kF32, {kT, kE});
  const Tensor idx = dev.alloc(DType::kI32, {kT, kK});
  const Tensor w = dev.alloc(DType::kF32, {kT, kK});
  const Tensor lse = dev.alloc(DType::kF32, {kT});
  const Tensor dw = random_tensor(dev, DType::kF32, {kT, kK}, 21);
  const Tensor dprobs = random_tensor(dev, DType::kF32, {kT, kE}, 22);
  const Tensor dlse = random_tensor(dev, DType::kF32, {kT}, 23);
  const Tensor dlogits = dev.alloc(DType::kF32, {kT, kE});
  const RouterParams p;
  const double te = double(kT * kE), tk = double(kT * kK);
  b.add("router", "fwd", dims({kT, kE}) + " top-2 softmax", 0, kF32 * (2 * te + 2 * tk + kT),
        [&] { router_fwd(b.ctx(), probs, idx, w, lse, logits, Tensor{}, p); });
  b.add("router", "bwd", dims({kT, kE}) + " top-2 softmax", 0, kF32 * (4 * te + 3 * tk + 2 * kT),
        [&] { router_bwd(b.ctx(), dlogits, dw, dprobs, dlse, probs, idx, w, logits, p); });
  dev.reset(mark);
}

void bench_dispatch(Bench& b, Arena& dev) {
  // x [T, D] <-> x_perm [R, D], R = T·K, bf16 rows, 1024 rows per expert; each op also uploads the
  // plan's index array (R or T·K i32). permute_fwd reads x, writes x_perm; permute_bwd reads
  // dx_perm, writes dx; unpermute_fwd reads y_perm, topk_w and y, writes y (+=); unpermute_bwd
  // reads dy, y_perm, topk_w, dtopk_w, writes dy_perm and dtopk_w (+=).
  const size_t mark = dev.mark();
  const std::vector<int32_t> choices = balanced_choices(24);
  Arena host(Device::kCpu, Arena::footprint(DType::kI32, {kT, kK}) + 4096, "plan host");
  const Tensor idx = host.alloc(DType::kI32, {kT, kK});
  std::copy(choices.begin(), choices.end(), idx.ptr<int32_t>());
  const DispatchPlan plan = make_dispatch_plan(idx, kE, 0, kE, std::nullopt);
  TMT_CHECK(plan.rows() == kR, "dispatch plan has {} rows, want {}", plan.rows(), kR);
  const Tensor x = random_tensor(dev, DType::kBF16, {kT, kD}, 25);
  const Tensor xp = dev.alloc(DType::kBF16, {kR, kD});
  const Tensor yp = random_tensor(dev, DType::kBF16, {kR, kD}, 26);
  const Tensor y = random_tensor(dev, DType::kBF16, {kT, kD}, 27);
  const Tensor w = random_tensor(dev, DType::kF32, {kT, kK}, 28, 0.0, 1.0);
  const Tensor dw = dev.alloc(DType::kF32, {kT, kK});
  const double td = kBf16 * double(kT * kD), rd = kBf16 * double(kR * kD), idx_bytes = kI32 * kR,
               w_bytes = kF32 * kR;
  const std::string shape = dims({kT, kD}) + " <-> " + dims({kR, kD});
  b.add("permute", "fwd", shape, 0, td + rd + idx_bytes,
        [&] { permute_fwd(b.ctx(), xp, x, plan); });
  b.add("permute", "bwd", shape, 0, td + rd + idx_bytes,
        [&] { permute_bwd(b.ctx(), x, yp, plan); });
  b.add("unpermute", "fwd", shape, 0, 2 * td + rd + idx_bytes + w_bytes,
        [&] { unpermute_fwd(b.ctx(), y, yp, w, plan); });
  b.add("unpermute", "bwd", shape, 0, td + 2 * rd + idx_bytes + 3 * w_bytes,
        [&] { unpermute_bwd(b.ctx(), xp, dw, y, yp, w, plan); });
  dev.reset(mark);
}

void bench_adamw(Bench& b, Arena& dev) {
  // f32 over N parameters: reads param, grad, m, v and writes param, m, v: 28 bytes a parameter.
  const size_t mark = dev.mark();
  const Tensor param = random_tensor(dev, DType::kF32, {kAdamParams}, 29);
  const Tensor grad = random_tensor(dev, DType::kF32, {kAdamParams}, 30);
  const Tensor m = random_tensor(dev, DType::kF32, {kAdamParams}, 31, -1e-3, 1e-3);
  const Tensor v = random_tensor(dev, DType::kF32, {kAdamParams}, 32, 0.0, 1e-4);
  AdamWParams p;
  p.lr = 1e-4;
  p.weight_decay = 0.1;
  p.step = 10;
  b.add("adamw", "step", dims({kAdamParams}) + " f32", 0, 28.0 * kAdamParams,
        [&] { adamw_step(b.ctx(), param, grad, m, v, p); });
  dev.reset(mark);
}

void bench_copy(Bench& b, Arena& dev) {
  // The memory ceiling as measured: a 1 GiB device-to-device copy (bytes read + written).
  const size_t mark = dev.mark();
  const int64_t n = int64_t{1} << 29;
  const Tensor src = random_tensor(dev, DType::kBF16, {n}, 33);
  const Tensor dst = dev.alloc(DType::kBF16, {n});
  const Context c = b.ctx();
  b.add("memcpy d2d", "-", "1 GiB (reference for the byte floor)", 0, 2.0 * kBf16 * n, [&] {
    BENCH_CUDA(cudaMemcpyAsync(dst.data, src.data, dst.nbytes(), cudaMemcpyDeviceToDevice,
                               static_cast<cudaStream_t>(c.stream)));
  });
  dev.reset(mark);
}

}  // namespace
}  // namespace tmt

int main() {
  std::string why;
  if (tmt::cuda::device_count(&why) == 0) {
    std::printf("SKIPPED: bench_cuda_kernels needs a CUDA GPU (%s)\n", why.c_str());
    return 77;
  }
  tmt::cuda::init(0);
  cudaDeviceProp prop{};
  BENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf(
      "%s, %d SMs, %.0f MB L2; median of %d runs after %d warm-ups, L2 flushed before "
      "each; floor = max(FLOPs / %.0f TFLOP/s, bytes / %.2f TB/s)\n\n",
      prop.name, prop.multiProcessorCount, prop.l2CacheSize / 1e6, tmt::kRuns, tmt::kWarmup,
      tmt::kPeakFlops / 1e12, tmt::kPeakBytes / 1e12);
  // The largest case (Mixtral's w13 through the grouped paths: x, W, an f32 dW, y, dy, dx) needs
  // about 6.4 GiB, the model's expert GEMMs' backward about 1.9 GB, adamw 1.6.
  tmt::Arena dev(tmt::Device::kCuda, size_t{12} << 30, "bench");
  tmt::Bench b(dev);
  tmt::Bench::print_header();
  tmt::bench_copy(b, dev);
  tmt::bench_linear(b, dev, "linear qkv", tmt::kD + 2 * tmt::kHk * tmt::kDh);
  tmt::bench_linear(b, dev, "linear lm_head", tmt::kV);
  tmt::bench_grouped_linear(b, dev, "experts w13", 2 * tmt::kF, tmt::kD);
  tmt::bench_grouped_linear(b, dev, "experts w2", tmt::kD, tmt::kF);
  tmt::bench_grouped_paths(b, dev, {"w13", tmt::kE, tmt::kR, 2 * tmt::kF, tmt::kD});
  tmt::bench_grouped_paths(b, dev, {"w2", tmt::kE, tmt::kR, tmt::kD, tmt::kF});
  tmt::bench_grouped_paths(b, dev, {"8x7B w13", 8, 8192, 2 * 14336, 4096});
  tmt::bench_grouped_paths(b, dev, {"8x7B w2", 8, 8192, 4096, 14336});
  // FP8 against bf16, one dense GEMM of every expert row: the model's w13 and Mixtral 8x7B's.
  tmt::bench_fp8_linear(b, dev, "w13 as one", tmt::kR, 2 * tmt::kF, tmt::kD);
  tmt::bench_fp8_linear(b, dev, "8x7B w13 as one", 8192, 2 * 14336, 4096);
  for (const tmt::AttentionShape& shape : tmt::kAttentionShapes)
    tmt::bench_attention(b, dev, shape);
  tmt::bench_rmsnorm(b, dev);
  tmt::bench_swiglu(b, dev);
  tmt::bench_rope(b, dev);
  tmt::bench_cross_entropy(b, dev);
  tmt::bench_router(b, dev);
  tmt::bench_dispatch(b, dev);
  tmt::bench_adamw(b, dev);
  return 0;
}
