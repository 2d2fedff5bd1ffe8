// linear on CUDA through cuBLASLt (formulas in kernels/linear.h).
//
// cuBLASLt is column-major; a row-major [r, c] matrix is the column-major [c, r] matrix with the
// same leading dimension c, i.e. its transpose. With x' = x^T [K, T], W' = W^T [K, N] and
// dy' = dy^T [N, T] (all column-major, no data moved):
//   fwd: y'  [N, T] = op_T(W') x'          (m N, n T, k K)   beta = accumulate
//   dx:  dx' [K, T] = W' dy'               (m K, n T, k N)   beta = accumulate_dx
//   dW:  dW' [K, N] = x' op_T(dy')         (m K, n N, k T)   beta = 1
// Compute type CUBLAS_COMPUTE_32F (plain fp32; the TF32 fast path is a different compute type),
// scale type f32. One handle per process, made on first use; the descriptors and the chosen
// algorithm are cached per problem (shape, types, alignment). The algorithm is chosen for a 32 MiB
// workspace, which every call takes from the caller's (Context::workspace; kernels/linear.h).
#include <cublasLt.h>

#include <map>
#include <tuple>

#include "kernels/base/workspace.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/linear.h"

namespace tmt::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

// The process's cuBLASLt handle (host state), made on first use.
cublasLtHandle_t blas() {
  static const cublasLtHandle_t handle = [] {
    cublasLtHandle_t made = nullptr;
    TMT_CUBLAS_CHECK(cublasLtCreate(&made));
    return made;
  }();
  return handle;
}

cudaDataType_t cuda_type(DType t) { return t == DType::kBF16 ? CUDA_R_16BF : CUDA_R_32F; }

// The largest power of two (up to 256) that divides the address: what cuBLASLt may assume.
uint32_t alignment(const void* p) {
  uint32_t a = 256;
  while (a > 1 && reinterpret_cast<uintptr_t>(p) % a != 0) a /= 2;
  return a;
}

// D [m, n] (column-major, leading dimension ldd) = op(A) op(B) + beta * D.
struct Gemm {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  int64_t lda = 0;
  const void* b = nullptr;
  int64_t ldb = 0;
  void* d = nullptr;
  int64_t ldd = 0;
  DType ab_type = DType::kF32, d_type = DType::kF32;
  float beta = 0.0f;
};

// What the descriptors and the algorithm depend on.
using PlanKey = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, DType,
                           DType, uint32_t, uint32_t, uint32_t>;

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

Plan make_plan(const Gemm& g, uint32_t align_a, uint32_t align_b, uint32_t align_d) {
  Plan p;
  TMT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_a = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  TMT_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
  TMT_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
  // Stored shapes: A is [m, k] or, transposed, [k, m]; B is [k, n] or [n, k].
  const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
  TMT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, cuda_type(g.ab_type), u(g.trans_a ? g.k : g.m),
                                              u(g.trans_a ? g.m : g.k), g.lda));
  TMT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, cuda_type(g.ab_type), u(g.trans_b ? g.n : g.k),
                                              u(g.trans_b ? g.k : g.n), g.ldb));
  TMT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, cuda_type(g.d_type), u(g.m), u(g.n), g.ldd));

  cublasLtMatmulPreference_t pref = nullptr;
  TMT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t workspace = kWorkspaceBytes;
  TMT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace));
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> alignments[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_d},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_d}};
  for (const auto& [attribute, bytes] : alignments) {
    TMT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attribute, &bytes, sizeof bytes));
  }
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  TMT_CUBLAS_CHECK(
      cublasLtMatmulAlgoGetHeuristic(blas(), p.desc, p.a, p.b, p.d, p.d, pref, 1, &result, &found));
  TMT_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
  TMT_CHECK(found > 0, "linear: cuBLASLt has no algorithm for m {} n {} k {} ({} -> {})", g.m, g.n,
            g.k, dtype_name(g.ab_type), dtype_name(g.d_type));
  p.algo = result.algo;
  return p;
}

const Plan& plan_for(const Gemm& g) {
  static std::map<PlanKey, Plan> plans;
  const uint32_t align_a = alignment(g.a), align_b = alignment(g.b), align_d = alignment(g.d);
  const PlanKey key{g.trans_a, g.trans_b, g.m,      g.n,     g.k,     g.lda,  g.ldb,
                    g.ldd,     g.ab_type, g.d_type, align_a, align_b, align_d};
  auto it = plans.find(key);
  if (it == plans.end()) it = plans.emplace(key, make_plan(g, align_a, align_b, align_d)).first;
  return it->second;
}

// `op` names the caller in the message when the context's workspace is missing or too small.
void gemm(const Context& ctx, const Gemm& g, const char* op) {
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0) {  // an empty sum: D = beta * D
    if (g.beta == 0.0f) {
      TMT_CUDA_CHECK(cudaMemsetAsync(g.d, 0, static_cast<size_t>(g.m * g.n) * dtype_size(g.d_type),
                                     stream_of(ctx)));
    }
    return;
  }
  void* workspace = workspace_for(ctx, kWorkspaceBytes, op);
  const Plan& p = plan_for(g);
  const float alpha = 1.0f;
  TMT_CUBLAS_CHECK(cublasLtMatmul(blas(), p.desc, &alpha, g.a, p.a, g.b, p.b, &g.beta, g.d, p.d,
                                  g.d, p.d, &p.algo, workspace, kWorkspaceBytes, stream_of(ctx)));
}

}  // namespace

size_t linear_workspace_bytes() { return kWorkspaceBytes; }

void linear_fwd(const Context& ctx, const Tensor& y, const Tensor& x, const Tensor& weight,
                bool accumulate) {
  const int64_t n_tokens = x.size(0), k = x.size(1), n = weight.size(0);
  Gemm g;
  g.trans_a = true;
  g.m = n, g.n = n_tokens, g.k = k;
  g.a = weight.data, g.lda = k;
  g.b = x.data, g.ldb = k;
  g.d = y.data, g.ldd = n;
  g.ab_type = x.dtype, g.d_type = y.dtype;
  g.beta = accumulate ? 1.0f : 0.0f;
  gemm(ctx, g, "linear_fwd");
}

void linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight, const Tensor& dy,
                const Tensor& x, const Tensor& weight, bool accumulate_dx) {
  const int64_t n_tokens = x.size(0), k = x.size(1), n = weight.size(0);
  if (dx.defined()) {
    Gemm g;
    g.m = k, g.n = n_tokens, g.k = n;
    g.a = weight.data, g.lda = k;
    g.b = dy.data, g.ldb = n;
    g.d = dx.data, g.ldd = k;
    g.ab_type = dy.dtype, g.d_type = dx.dtype;
    g.beta = accumulate_dx ? 1.0f : 0.0f;
    gemm(ctx, g, "linear_bwd");
  }
  if (dweight.defined()) {
    Gemm g;
    g.trans_b = true;
    g.m = k, g.n = n, g.k = n_tokens;
    g.a = x.data, g.lda = k;
    g.b = dy.data, g.ldb = n;
    g.d = dweight.data, g.ldd = k;
    g.ab_type = x.dtype, g.d_type = dweight.dtype;
    g.beta = 1.0f;
    gemm(ctx, g, "linear_bwd");
  }
}

}  // namespace tmt::cuda
