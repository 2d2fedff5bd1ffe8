// grouped_gemm.h: the request read from the environment, what each path can run, the workspace
// layout, the host counts' upload, and the cuBLAS grouped path. The CUTLASS kernels are in
// grouped_gemm_cutlass_<tile>.cu.
//
// Workspace of one call, from the start of Context::workspace:
//   CUTLASS: [counts: E i64] [problem sizes] [A, B, C, D pointers] [A, B, C, D strides]
//            [CUTLASS's own: TMA descriptors]               (grouped_gemm_cutlass.h sizes them)
//   cuBLAS:  [A pointers] [B pointers] [C pointers] [cuBLAS scratch: 32 MiB]
#include <cublas_v2.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/base/env.h"
#include "kernels/base/log.h"
#include "kernels/base/workspace.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/grouped_gemm.h"
#include "kernels/cuda/grouped_gemm_cutlass.h"

namespace tmt::cuda {

namespace cutlass_grouped {
bool compiled() { return TMT_CUTLASS_SM90 != 0; }
}  // namespace cutlass_grouped

namespace {

using cutlass_grouped::round_up;
using cutlass_grouped::table_bytes;

constexpr size_t kCublasScratchBytes = size_t{32} << 20;  // cuBLAS's recommendation for Hopper

// ---- the request ------------------------------------------------------------------------------
GroupedGemmChoice read_request() {
  GroupedGemmChoice c;
  c.path = env_choice<GroupedGemmPath>("TMT_GROUPED_GEMM", {{"cutlass", GroupedGemmPath::kCutlass},
                                                            {"cublas", GroupedGemmPath::kCublas},
                                                            {"loop", GroupedGemmPath::kLoop}})
               .value_or(c.path);
  c.tile = env_choice<CutlassTile>("TMT_GROUPED_GEMM_TILE",
                                   {{"128x256", CutlassTile::kCooperative128x256},
                                    {"128x128", CutlassTile::kCooperative128x128},
                                    {"pingpong", CutlassTile::kPingpong128x128}})
               .value_or(c.tile);
  return c;
}

// ---- the GPU ----------------------------------------------------------------------------------
struct Gpu {
  int major = 0, minor = 0, sm_count = 0;
};

// The current device's compute capability and SM count, asked once (a process binds one GPU).
const Gpu& gpu() {
  static const Gpu g = [] {
    int device = 0;
    TMT_CUDA_CHECK(cudaGetDevice(&device));
    Gpu made;
    TMT_CUDA_CHECK(cudaDeviceGetAttribute(&made.major, cudaDevAttrComputeCapabilityMajor, device));
    TMT_CUDA_CHECK(cudaDeviceGetAttribute(&made.minor, cudaDevAttrComputeCapabilityMinor, device));
    TMT_CUDA_CHECK(cudaDeviceGetAttribute(&made.sm_count, cudaDevAttrMultiProcessorCount, device));
    return made;
  }();
  return g;
}

// ---- shapes -----------------------------------------------------------------------------------
// R, N, K of a pass (grouped_gemm.h: which tensor carries which).
struct Dims {
  int64_t rows = 0, n = 0, k = 0;
};

Dims dims_of(GroupedPass pass, const Tensor& out, const Tensor& a, const Tensor& b) {
  switch (pass) {
    case GroupedPass::kFwd:  // y [R, N], x [R, K], W [E, N, K]
      return {a.size(0), b.size(1), b.size(2)};
    case GroupedPass::kDgrad:  // dx [R, K], dy [R, N], W [E, N, K]
      return {a.size(0), b.size(1), b.size(2)};
    case GroupedPass::kWgrad:  // dW [E, N, K], dy [R, N], x [R, K]
      return {a.size(0), out.size(1), out.size(2)};
  }
  return {};
}

bool aligned16(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.data) % 16 == 0; }

// cuBLAS has refused bf16 operands with an f32 output in a grouped GEMM (found on first use).
bool cublas_refused_f32_output = false;

// ---- cuBLAS -----------------------------------------------------------------------------------
// The process's cuBLAS handle (host state), made on first use.
cublasHandle_t cublas() {
  static const cublasHandle_t handle = [] {
    cublasHandle_t made = nullptr;
    TMT_CUBLAS_CHECK(cublasCreate(&made));
    return made;
  }();
  return handle;
}

// The per-group arrays cublasGemmGroupedBatchedEx reads on the host, kept between calls so that
// a call allocates nothing once they have grown.
struct CublasGroups {
  std::vector<cublasOperation_t> trans_a, trans_b;
  std::vector<int> m, n, k, lda, ldb, ldc, size;
  std::vector<float> alpha, beta;
  std::vector<const void*> pointers;  // A of every problem, then B, then C
  std::vector<int64_t> order, first;  // experts with rows, by row count; each one's first row
};

// One cuBLAS problem a non-empty expert, column-major (as in linear.cu: a row-major [r, c]
// matrix is the column-major [c, r] one):
//   fwd:   y_e'  [N, R_e] = op_T(W_e') x_e'    m N, n R_e, k K
//   dgrad: dx_e' [K, R_e] = W_e' dy_e'         m K, n R_e, k N
//   wgrad: dW_e' [K, N]  += x_e' op_T(dy_e')   m K, n N,   k R_e
// Experts with the same row count are one group (with balanced routing, a single group).
// Returns false, having done nothing, when cuBLAS refuses an f32 output.
bool cublas_grouped(const Context& ctx, GroupedPass pass, const Tensor& out, const Tensor& a,
                    const Tensor& b, const std::vector<int64_t>& counts, const Dims& d) {
  static CublasGroups g;
  const auto experts = static_cast<int64_t>(counts.size());
  g.first.assign(counts.size(), 0);
  g.order.clear();
  for (int64_t e = 0, row = 0; e < experts; row += counts[static_cast<size_t>(e)], ++e) {
    g.first[static_cast<size_t>(e)] = row;
    if (counts[static_cast<size_t>(e)] > 0) g.order.push_back(e);
  }
  std::stable_sort(g.order.begin(), g.order.end(), [&](int64_t x, int64_t y) {
    return counts[static_cast<size_t>(x)] < counts[static_cast<size_t>(y)];
  });
  const auto problems = static_cast<int64_t>(g.order.size());
  for (auto* v : {&g.m, &g.n, &g.k, &g.lda, &g.ldb, &g.ldc, &g.size}) v->clear();
  for (auto* v : {&g.trans_a, &g.trans_b}) v->clear();
  g.alpha.clear();
  g.beta.clear();
  g.pointers.assign(static_cast<size_t>(3 * problems), nullptr);

  const size_t ab = dtype_size(DType::kBF16), o = dtype_size(out.dtype);
  const auto* pa = static_cast<const std::byte*>(a.data);
  const auto* pb = static_cast<const std::byte*>(b.data);
  auto* po = static_cast<std::byte*>(out.data);
  const bool wgrad = pass == GroupedPass::kWgrad;
  const auto i = [](int64_t v) { return static_cast<int>(v); };
  for (int64_t p = 0; p < problems; ++p) {
    const int64_t e = g.order[static_cast<size_t>(p)], r = counts[static_cast<size_t>(e)];
    const auto first = static_cast<size_t>(g.first[static_cast<size_t>(e)]);
    const auto expert = static_cast<size_t>(e * d.n * d.k);
    const void *pa_e = nullptr, *pb_e = nullptr, *pc_e = nullptr;
    if (pass == GroupedPass::kFwd) {
      pa_e = pb + expert * ab, pb_e = pa + first * d.k * ab, pc_e = po + first * d.n * o;
    } else if (pass == GroupedPass::kDgrad) {
      pa_e = pb + expert * ab, pb_e = pa + first * d.n * ab, pc_e = po + first * d.k * o;
    } else {
      pa_e = pb + first * d.k * ab, pb_e = pa + first * d.n * ab, pc_e = po + expert * o;
    }
    g.pointers[static_cast<size_t>(p)] = pa_e;
    g.pointers[static_cast<size_t>(problems + p)] = pb_e;
    g.pointers[static_cast<size_t>(2 * problems + p)] = pc_e;
    const bool same =
        p > 0 && counts[static_cast<size_t>(g.order[static_cast<size_t>(p - 1)])] == r;
    if (same) {
      ++g.size.back();
      continue;
    }
    g.trans_a.push_back(pass == GroupedPass::kFwd ? CUBLAS_OP_T : CUBLAS_OP_N);
    g.trans_b.push_back(wgrad ? CUBLAS_OP_T : CUBLAS_OP_N);
    g.m.push_back(i(pass == GroupedPass::kFwd ? d.n : d.k));
    g.n.push_back(i(wgrad ? d.n : r));
    g.k.push_back(i(pass == GroupedPass::kFwd ? d.k : pass == GroupedPass::kDgrad ? d.n : r));
    g.lda.push_back(i(d.k));
    g.ldb.push_back(i(pass == GroupedPass::kFwd ? d.k : d.n));
    g.ldc.push_back(i(pass == GroupedPass::kFwd ? d.n : d.k));
    g.alpha.push_back(1.0f);
    g.beta.push_back(wgrad ? 1.0f : 0.0f);
    g.size.push_back(1);
  }
  if (problems == 0) return true;

  const size_t pointer_bytes = round_up(3 * static_cast<size_t>(experts) * sizeof(void*), 256);
  auto* ws = workspace_for<std::byte>(ctx, pointer_bytes + kCublasScratchBytes, "grouped_linear");
  const cudaStream_t stream = stream_of(ctx);
  // From pageable memory: staged before the call returns, so g may change afterwards.
  TMT_CUDA_CHECK(cudaMemcpyAsync(ws, g.pointers.data(), g.pointers.size() * sizeof(void*),
                                 cudaMemcpyHostToDevice, stream));
  const auto* dev = reinterpret_cast<const void* const*>(ws);
  TMT_CUBLAS_CHECK(cublasSetStream(cublas(), stream));
  // After cublasSetStream, which resets the handle to cuBLAS's own workspace.
  TMT_CUBLAS_CHECK(cublasSetWorkspace(cublas(), ws + pointer_bytes, kCublasScratchBytes));
  const cudaDataType_t out_type = out.dtype == DType::kF32 ? CUDA_R_32F : CUDA_R_16BF;
  const cublasStatus_t status = cublasGemmGroupedBatchedEx(
      cublas(), g.trans_a.data(), g.trans_b.data(), g.m.data(), g.n.data(), g.k.data(),
      g.alpha.data(), dev, CUDA_R_16BF, g.lda.data(), dev + problems, CUDA_R_16BF, g.ldb.data(),
      g.beta.data(), const_cast<void* const*>(dev + 2 * problems), out_type, g.ldc.data(),
      static_cast<int>(g.size.size()), g.size.data(), CUBLAS_COMPUTE_32F);
  const bool refused =
      status == CUBLAS_STATUS_NOT_SUPPORTED || status == CUBLAS_STATUS_INVALID_VALUE;
  if (out.dtype == DType::kF32 && refused) {
    cublas_refused_f32_output = true;
    log_warn(
        "cublasGemmGroupedBatchedEx refuses bf16 operands with an f32 output ({}): the "
        "weight gradients into f32 go through one cuBLASLt call an expert",
        cublasGetStatusString(status));
    return false;
  }
  TMT_CUBLAS_CHECK(status);
  return true;
}

// ---- CUTLASS ----------------------------------------------------------------------------------
void cutlass_grouped_gemm(const Context& ctx, CutlassTile tile, GroupedPass pass, const Tensor& out,
                          const Tensor& a, const Tensor& b, const int64_t* counts,
                          std::byte* workspace, int64_t experts, const Dims& d) {
  cutlass_grouped::Call call;
  call.pass = pass;
  call.a = a.data;
  call.b = b.data;
  call.out = out.data;
  call.out_f32 = out.dtype == DType::kF32;
  call.rows = d.rows, call.n = d.n, call.k = d.k, call.experts = experts;
  call.counts = counts;
  call.workspace = workspace;
  call.workspace_bytes = cutlass_grouped::workspace_bytes(experts);
  call.sm_count = gpu().sm_count;
  call.stream = ctx.stream;
  switch (tile) {
    case CutlassTile::kCooperative128x256:
      return cutlass_grouped::run_cooperative_128x256(call);
    case CutlassTile::kCooperative128x128:
      return cutlass_grouped::run_cooperative_128x128(call);
    case CutlassTile::kPingpong128x128:
      return cutlass_grouped::run_pingpong_128x128(call);
  }
}

// The workspace of a CUTLASS call: the counts' slot, then the tables and CUTLASS's own.
size_t cutlass_call_bytes(int64_t experts) {
  return table_bytes(experts) + cutlass_grouped::workspace_bytes(experts);
}

}  // namespace

GroupedGemmChoice requested_grouped_gemm() {
  static const GroupedGemmChoice choice = read_request();
  return choice;
}

bool grouped_gemm_supported(GroupedGemmPath path, GroupedPass pass, const Tensor& out,
                            const Tensor& a, const Tensor& b, int64_t experts, std::string* why) {
  const auto no = [why](std::string reason) {
    if (why != nullptr) *why = std::move(reason);
    return false;
  };
  if (path == GroupedGemmPath::kLoop) return true;
  if (a.dtype != DType::kBF16 || b.dtype != DType::kBF16) return no("operands are not bf16");
  const bool f32_out = pass == GroupedPass::kWgrad && out.dtype == DType::kF32;
  if (out.dtype != DType::kBF16 && !f32_out) {
    return no(fmt::format("output {} is neither bf16 nor (for dweight) f32", out.str()));
  }
  if (experts > kGroupedGemmMaxExperts) {
    return no(fmt::format("{} experts, more than {}", experts, kGroupedGemmMaxExperts));
  }
  const Dims d = dims_of(pass, out, a, b);
  if (d.rows > INT_MAX || d.n > INT_MAX || d.k > INT_MAX) return no("sizes beyond 32 bits");
  if (path == GroupedGemmPath::kCublas) {
    if (f32_out && cublas_refused_f32_output) return no("cuBLAS refuses an f32 output");
    return true;
  }
  if (!cutlass_grouped::compiled()) return no("built without sm_90a (TMT_CUDA_ARCHS)");
  if (gpu().major != 9 || gpu().minor != 0) {
    return no(fmt::format("the GPU is sm_{}{}, the kernels sm_90a", gpu().major, gpu().minor));
  }
  if (d.n % 8 != 0 || d.k % 8 != 0) {
    return no(fmt::format("N {} and K {} are not both multiples of 8 (16-byte rows)", d.n, d.k));
  }
  if (!aligned16(out) || !aligned16(a) || !aligned16(b)) return no("tensors not 16-byte aligned");
  return true;
}

bool grouped_gemm(const Context& ctx, GroupedGemmChoice choice, GroupedPass pass, const Tensor& out,
                  const Tensor& a, const Tensor& b, const std::vector<int64_t>& counts) {
  const Dims d = dims_of(pass, out, a, b);
  if (d.rows == 0) return true;  // no rows: nothing to write, dW unchanged
  if (choice.path == GroupedGemmPath::kCublas) {
    return cublas_grouped(ctx, pass, out, a, b, counts, d);
  }
  TMT_CHECK(choice.path == GroupedGemmPath::kCutlass, "grouped_gemm: the loop is the caller's");
  const auto experts = static_cast<int64_t>(counts.size());
  auto* ws = workspace_for<std::byte>(ctx, cutlass_call_bytes(experts), "grouped_linear");
  // The upload the device-side dispatch plan will make unnecessary (its counts stay on the GPU).
  TMT_CUDA_CHECK(cudaMemcpyAsync(ws, counts.data(), counts.size() * sizeof(int64_t),
                                 cudaMemcpyHostToDevice, stream_of(ctx)));
  cutlass_grouped_gemm(ctx, choice.tile, pass, out, a, b, reinterpret_cast<const int64_t*>(ws),
                       ws + table_bytes(experts), experts, d);
  return true;
}

void grouped_gemm(const Context& ctx, CutlassTile tile, GroupedPass pass, const Tensor& out,
                  const Tensor& a, const Tensor& b, const Tensor& counts) {
  TMT_CHECK(counts.dtype == DType::kI64 && counts.rank() == 1 && counts.device == Device::kCuda,
            "grouped_gemm: counts {} are not i64 [E] on cuda", counts.str());
  const int64_t experts = counts.size(0);
  std::string why;
  TMT_CHECK(grouped_gemm_supported(GroupedGemmPath::kCutlass, pass, out, a, b, experts, &why),
            "grouped_gemm: CUTLASS cannot run this call: {}", why);
  const Dims d = dims_of(pass, out, a, b);
  if (d.rows == 0) return;
  auto* ws = workspace_for<std::byte>(ctx, cutlass_call_bytes(experts), "grouped_linear");
  cutlass_grouped_gemm(ctx, tile, pass, out, a, b, counts.ptr<int64_t>(), ws + table_bytes(experts),
                       experts, d);
}

size_t grouped_gemm_workspace_bytes(int64_t experts) {
  const size_t pointers = round_up(3 * static_cast<size_t>(experts) * sizeof(void*), 256);
  return std::max(cutlass_call_bytes(experts), pointers + kCublasScratchBytes);
}

}  // namespace tmt::cuda
