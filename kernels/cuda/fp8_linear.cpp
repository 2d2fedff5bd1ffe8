// fp8_linear.h: each pass carves its codes and scales from Context::workspace (Scratch; measuring
// with a null base gives fp8_linear_workspace_bytes, so the sizes and the carving cannot differ),
// quantizes its operands and runs one FP8 GEMM.
#include "kernels/cuda/fp8_linear.h"

#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstddef>

#include "kernels/base/check.h"
#include "kernels/base/workspace.h"
#include "kernels/cuda/fp8_gemm_sm90.h"
#include "kernels/cuda/fp8_quantize.h"

namespace tmt::cuda {
namespace {

constexpr int64_t kTile = 128;
constexpr size_t kAlign = 256;
// CUTLASS's own scratch for one GEMM (its persistent tile scheduler's); each call checks what
// CUTLASS asks against it.
constexpr int64_t kGemmScratch = int64_t{1} << 20;
// Rows quantized and multiplied at a time (a multiple of 128), so that the scratch does not grow
// with the rows a call brings (an expert's received rows vary from step to step).
constexpr int64_t kRowChunk = 4096;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t pad16(int64_t rows) { return (rows + 15) / 16 * 16; }

// Tensors carved one after another from a block of device memory, or only counted (base null).
class Scratch {
 public:
  explicit Scratch(std::byte* base) : base_(base) {}
  Tensor take(DType dtype, Shape shape) {
    used_ = (used_ + kAlign - 1) / kAlign * kAlign;
    Tensor t{base_ != nullptr ? base_ + used_ : nullptr, dtype, Device::kCuda, shape};
    used_ += t.nbytes();
    return t;
  }
  Tensor codes(int64_t rows, int64_t cols) { return take(DType::kF8E4M3, {rows, cols}); }
  Tensor scales(int64_t count) { return take(DType::kF32, {count}); }
  bool measuring() const { return base_ == nullptr; }
  size_t used() const { return used_; }

 private:
  std::byte* base_;
  size_t used_ = 0;
};

void gemm(const Fp8Gemm& g, const Tensor& scratch) {
  const size_t needed = fp8_gemm_workspace(g);
  TMT_CHECK(needed <= scratch.nbytes(), "fp8 linear: CUTLASS asks {} scratch bytes, {} reserved",
            needed, scratch.nbytes());
  fp8_gemm(g, scratch.data, scratch.nbytes());
}

void check_bf16(const char* op, const char* what, const Tensor& t) {
  TMT_CHECK(t.device == Device::kCuda && t.dtype == DType::kBF16 && t.rank() == 2,
            "{}: {} must be a 2-D bf16 CUDA tensor, got {}", op, what, t.str());
}

// The first `rows` rows of a [chunk, cols] carving, and the first `count` scales.
Tensor rows_of(const Tensor& codes, int64_t rows, int64_t cols) {
  return codes.view_flat(rows * cols).view({rows, cols});
}
Tensor first(const Tensor& scales, int64_t count) { return scales.view_flat(count); }

// y (+)= x Wᵀ, W quantized once and x kRowChunk rows at a time.
void forward(Scratch& s, const Context& ctx, const Tensor& y, const Tensor& x, const Tensor& w,
             bool pow2, bool accumulate) {
  const int64_t rows = x.size(0), k = x.size(1), n = w.size(0);
  const int64_t chunk = std::min(rows, kRowChunk);
  const Tensor wq = s.codes(n, k), ws = s.scales(ceil_div(n, kTile) * ceil_div(k, kTile));
  const Tensor xq = s.codes(chunk, k), xs = s.scales(ceil_div(k, kTile) * chunk);
  const Tensor scratch = s.take(DType::kF8E4M3, {kGemmScratch});
  if (s.measuring() || rows == 0) return;
  fp8_quantize_blocks(ctx, wq, ws, Tensor{}, Tensor{}, w, pow2);
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t r = std::min(chunk, rows - r0);
    const Tensor q = rows_of(xq, r, k), qs = first(xs, ceil_div(k, kTile) * r);
    fp8_quantize_rows(ctx, q, qs, x.slice(r0, r0 + r), pow2);
    gemm({.kind = Fp8GemmKind::kRowsByBlocks,
          .m = r,
          .n = n,
          .k = k,
          .a = q.data,
          .a_scales = qs.ptr<float>(),
          .b = wq.data,
          .b_scales = ws.ptr<float>(),
          .d = y.slice(r0, r0 + r).data,
          .accumulate = accumulate,
          .stream = ctx.stream},
         scratch);
  }
}

// dx (+)= dy W when dx is given; dW += dyᵀ x when dw is given; kRowChunk rows at a time (a
// multiple of 128: the chunks keep the column tiles whole, and each adds its part to dW).
void backward(Scratch& s, const Context& ctx, const Tensor& dx, const Tensor& dw, const Tensor& dy,
              const Tensor& x, const Tensor& w, bool pow2, bool accumulate_dx) {
  const int64_t rows = x.size(0), k = x.size(1), n = w.size(0);
  const int64_t chunk = std::min(rows, kRowChunk), padded_chunk = pad16(chunk);
  const int64_t blocks = ceil_div(n, kTile) * ceil_div(k, kTile);
  const Tensor wq = s.codes(n, k), ws = s.scales(blocks);
  const Tensor wtq = s.codes(k, n), wts = s.scales(blocks);
  const Tensor dyq = s.codes(chunk, n), dys = s.scales(ceil_div(n, kTile) * chunk);
  const Tensor dytq = s.codes(n, padded_chunk), dyts = s.scales(ceil_div(chunk, kTile) * n);
  const Tensor xtq = s.codes(k, padded_chunk), xts = s.scales(ceil_div(chunk, kTile) * k);
  const Tensor scratch = s.take(DType::kF8E4M3, {kGemmScratch});
  if (s.measuring() || rows == 0) return;
  if (dx.data != nullptr) fp8_quantize_blocks(ctx, wq, ws, wtq, wts, w, pow2);
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t r = std::min(chunk, rows - r0), padded = pad16(r);
    const Tensor dy_part = dy.slice(r0, r0 + r);
    if (dx.data != nullptr) {
      const Tensor q = rows_of(dyq, r, n), qs = first(dys, ceil_div(n, kTile) * r);
      fp8_quantize_rows(ctx, q, qs, dy_part, pow2);
      gemm({.kind = Fp8GemmKind::kRowsByBlocks,
            .m = r,
            .n = k,
            .k = n,
            .a = q.data,
            .a_scales = qs.ptr<float>(),
            .b = wtq.data,
            .b_scales = wts.ptr<float>(),
            .d = dx.slice(r0, r0 + r).data,
            .accumulate = accumulate_dx,
            .stream = ctx.stream},
           scratch);
    }
    if (dw.data != nullptr) {
      const Tensor dq = rows_of(dytq, n, padded), dqs = first(dyts, ceil_div(r, kTile) * n);
      const Tensor xq = rows_of(xtq, k, padded), xqs = first(xts, ceil_div(r, kTile) * k);
      fp8_quantize_columns(ctx, dq, dqs, dy_part, pow2, padded);
      fp8_quantize_columns(ctx, xq, xqs, x.slice(r0, r0 + r), pow2, padded);
      gemm({.kind = Fp8GemmKind::kRowsByRows,
            .m = n,
            .n = k,
            .k = padded,
            .a = dq.data,
            .a_scales = dqs.ptr<float>(),
            .b = xq.data,
            .b_scales = xqs.ptr<float>(),
            .d = dw.data,
            .accumulate = true,
            .stream = ctx.stream},
           scratch);
    }
  }
}

std::byte* workspace_of(const Context& ctx, int64_t n, int64_t k, const char* op) {
  return static_cast<std::byte*>(workspace_for(ctx, fp8_linear_workspace_bytes(n, k), op));
}

// Expert e's [n, k] of an [E, n, k] tensor.
Tensor expert(const Tensor& w, int64_t e) {
  return w.view({w.size(0), w.size(1) * w.size(2)}).slice(e, e + 1).view({w.size(1), w.size(2)});
}

void check_experts(const char* op, const Tensor& weight, const std::vector<int64_t>& counts) {
  TMT_CHECK(weight.device == Device::kCuda && weight.rank() == 3 && weight.dtype == DType::kBF16 &&
                weight.size(0) == static_cast<int64_t>(counts.size()),
            "{}: weight must be bf16 [E, N, K] for {} experts, got {}", op, counts.size(),
            weight.str());
}

void check_supported(const char* op, int64_t n, int64_t k) {
  std::string why;
  TMT_CHECK(fp8_linear_available(&why), "{}: {}", op, why);
  TMT_CHECK(fp8_linear_supported(n, k),
            "{}: [{}, {}] weights cannot run in FP8 (N and K must be multiples of 16)", op, n, k);
}

// f(scratch, e, first row, end row) for each expert with rows, one after another on ctx's stream,
// so that every expert carves the same block.
template <class F>
void for_each_expert(const Context& ctx, const Tensor& weight, const std::vector<int64_t>& counts,
                     const char* op, F f) {
  const int64_t n = weight.size(1), k = weight.size(2);
  check_supported(op, n, k);
  std::byte* base = workspace_of(ctx, n, k, op);
  int64_t row = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] > 0) {
      Scratch s(base);
      f(s, static_cast<int64_t>(e), row, row + counts[e]);
    }
    row += counts[e];
  }
}

}  // namespace

bool fp8_linear_available(std::string* why) {
  if (!fp8_gemm_sm90_compiled()) {
    if (why != nullptr) *why = "this build has no sm_90a kernels (TMT_CUDA_ARCHS without 90a)";
    return false;
  }
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    if (why != nullptr) *why = "the GPU's compute capability cannot be read";
    return false;
  }
  if (major != 9) {
    if (why != nullptr) {
      *why = fmt::format("the FP8 GEMMs are Hopper's (sm_90a); this GPU is sm_{}{}", major, minor);
    }
    return false;
  }
  return true;
}

bool fp8_linear_supported(int64_t n, int64_t k) {
  return n > 0 && k > 0 && n % 16 == 0 && k % 16 == 0 && fp8_linear_available(nullptr);
}

size_t fp8_linear_workspace_bytes(int64_t n, int64_t k) {
  const Tensor x{nullptr, DType::kBF16, Device::kCuda, {kRowChunk, k}};
  const Tensor w{nullptr, DType::kBF16, Device::kCuda, {n, k}};
  Scratch fwd(nullptr), bwd(nullptr);
  forward(fwd, Context{}, Tensor{}, x, w, false, false);
  backward(bwd, Context{}, Tensor{}, Tensor{}, Tensor{}, x, w, false, false);
  return std::max(fwd.used(), bwd.used());
}

void fp8_linear_fwd(const Context& ctx, const Tensor& y, const Tensor& x, const Tensor& weight,
                    bool pow2_scales, bool accumulate) {
  constexpr const char* kOp = "fp8_linear_fwd";
  check_bf16(kOp, "x", x);
  check_bf16(kOp, "weight", weight);
  check_bf16(kOp, "y", y);
  check_supported(kOp, weight.size(0), weight.size(1));
  Scratch s(workspace_of(ctx, weight.size(0), weight.size(1), kOp));
  forward(s, ctx, y, x, weight, pow2_scales, accumulate);
}

void fp8_linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                    const Tensor& x, const Tensor& weight, bool pow2_scales, bool accumulate_dx) {
  constexpr const char* kOp = "fp8_linear_bwd";
  check_bf16(kOp, "dy", dy);
  check_bf16(kOp, "x", x);
  check_bf16(kOp, "weight", weight);
  if (dx.data != nullptr) check_bf16(kOp, "dx", dx);
  TMT_CHECK(dweight.data == nullptr || dweight.dtype == DType::kF32,
            "{}: dweight must be f32 (the master gradient), got {}", kOp, dweight.str());
  check_supported(kOp, weight.size(0), weight.size(1));
  Scratch s(workspace_of(ctx, weight.size(0), weight.size(1), kOp));
  backward(s, ctx, dx, dweight, dy, x, weight, pow2_scales, accumulate_dx);
}

void fp8_grouped_linear_fwd(const Context& ctx, const Tensor& y, const Tensor& x,
                            const Tensor& weight, const std::vector<int64_t>& counts,
                            bool pow2_scales) {
  constexpr const char* kOp = "fp8_grouped_linear_fwd";
  check_bf16(kOp, "x", x);
  check_bf16(kOp, "y", y);
  check_experts(kOp, weight, counts);
  for_each_expert(ctx, weight, counts, kOp, [&](Scratch& s, int64_t e, int64_t r0, int64_t r1) {
    forward(s, ctx, y.slice(r0, r1), x.slice(r0, r1), expert(weight, e), pow2_scales, false);
  });
}

void fp8_grouped_linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight,
                            const Tensor& dy, const Tensor& x, const Tensor& weight,
                            const std::vector<int64_t>& counts, bool pow2_scales) {
  constexpr const char* kOp = "fp8_grouped_linear_bwd";
  check_bf16(kOp, "dy", dy);
  check_bf16(kOp, "x", x);
  if (dx.data != nullptr) check_bf16(kOp, "dx", dx);
  check_experts(kOp, weight, counts);
  TMT_CHECK(dweight.data == nullptr || (dweight.dtype == DType::kF32 && dweight.rank() == 3),
            "{}: dweight must be f32 [E, N, K], got {}", kOp, dweight.str());
  for_each_expert(ctx, weight, counts, kOp, [&](Scratch& s, int64_t e, int64_t r0, int64_t r1) {
    backward(s, ctx, dx.data != nullptr ? dx.slice(r0, r1) : Tensor{},
             dweight.data != nullptr ? expert(dweight, e) : Tensor{}, dy.slice(r0, r1),
             x.slice(r0, r1), expert(weight, e), pow2_scales, false);
  });
}

}  // namespace tmt::cuda
