// linear on CUDA through cuBLASLt (formulas in kernels/linear.h).
//
// cuBLASLt is column-major; a row-major [r, c] matrix is the column-major [c, r] matrix with the
// same leading dimension c, i.e. its transpose. With x' = x^T [K, T], W' = W^T [K, N] and
// dy' = dy^T [N, T] (all column-major, no data moved):
//   fwd: y'  [N, T] = op_T(W') x'          (m N, n T, k K)   beta = accumulate
//   dx:  dx' [K, T] = W' dy'               (m K, n T, k N)   beta = accumulate_dx
//   dW:  dW' [K, N] = x' op_T(dy')         (m K, n N, k T)   beta = 1
// Compute type CUBLAS_COMPUTE_32F (plain fp32; the TF32 fast path is a different compute type),
// scale type f32. One handle per process, made on first use. The algorithm is chosen for a 32 MiB
// workspace, which every call takes from the caller's (Context::workspace; kernels/linear.h).
//
// Plans: the matmul descriptor and the algorithm are cached per shape class — transposes, types,
// alignments, the fixed dimensions, and the token dimension (n, or k for dW; the row count of an
// expert changes every micro-batch) rounded up to a bucket of about a quarter octave — so the
// grouped GEMMs' loop (kernels/grouped_linear.cpp) asks the heuristic a bounded number of times.
// The three matrix layouts hold the exact sizes: made for each call and destroyed after it. An
// algorithm chosen at the bucket's size that cuBLASLt refuses at the exact size (not expected:
// the bucket differs in one dimension only) is replaced, for that call, by one chosen at the exact
// size (with a warning, once).
#include <cublasLt.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "kernels/base/log.h"
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
  // Which of n and k counts tokens (rows of x): bucketed in the plan key.
  enum class Tokens : uint8_t { kN, kK };
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
  Tokens tokens = Tokens::kN;
};

// The bucket of a token count: rounded up to a quarter of its power of two (at least 16), so
// 1024 -> 1024, 1100 -> 1280, 37 -> 48. About four buckets an octave.
int64_t bucket(int64_t tokens) {
  int64_t p = 1;
  while (p * 2 <= tokens) p *= 2;
  const int64_t step = std::max<int64_t>(p / 4, 16);
  return (tokens + step - 1) / step * step;
}

// The three matrix layouts of one problem, destroyed with it.
struct Layouts {
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;

  explicit Layouts(const Gemm& g) {
    // Stored shapes: A is [m, k] or, transposed, [k, m]; B is [k, n] or [n, k].
    const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
    TMT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&a, cuda_type(g.ab_type), u(g.trans_a ? g.k : g.m),
                                                u(g.trans_a ? g.m : g.k), g.lda));
    TMT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&b, cuda_type(g.ab_type), u(g.trans_b ? g.n : g.k),
                                                u(g.trans_b ? g.k : g.n), g.ldb));
    TMT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d, cuda_type(g.d_type), u(g.m), u(g.n), g.ldd));
  }
  ~Layouts() {
    cublasLtMatrixLayoutDestroy(a);
    cublasLtMatrixLayoutDestroy(b);
    cublasLtMatrixLayoutDestroy(d);
  }
  Layouts(const Layouts&) = delete;
  Layouts& operator=(const Layouts&) = delete;
};

struct Alignments {
  uint32_t a = 0, b = 0, d = 0;
};

// What a plan depends on: the shape class (token dimension bucketed), types and alignments.
using PlanKey = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, DType,
                           DType, uint32_t, uint32_t, uint32_t>;

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

cublasLtMatmulDesc_t make_desc(const Gemm& g) {
  cublasLtMatmulDesc_t desc = nullptr;
  TMT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t op_a = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  TMT_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof op_a));
  TMT_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof op_b));
  return desc;
}

// The heuristic's first choice for `g` (its sizes as given) under `desc`.
cublasLtMatmulAlgo_t choose_algo(const Gemm& g, cublasLtMatmulDesc_t desc, const Alignments& al) {
  const Layouts l(g);
  cublasLtMatmulPreference_t pref = nullptr;
  TMT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t workspace = kWorkspaceBytes;
  TMT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace));
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> alignments[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, al.a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, al.b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, al.d},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, al.d}};
  for (const auto& [attribute, bytes] : alignments) {
    TMT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attribute, &bytes, sizeof bytes));
  }
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  TMT_CUBLAS_CHECK(
      cublasLtMatmulAlgoGetHeuristic(blas(), desc, l.a, l.b, l.d, l.d, pref, 1, &result, &found));
  TMT_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
  TMT_CHECK(found > 0, "linear: cuBLASLt has no algorithm for m {} n {} k {} ({} -> {})", g.m, g.n,
            g.k, dtype_name(g.ab_type), dtype_name(g.d_type));
  return result.algo;
}

// The plan of g's shape class, made on first use (descriptor and algorithm live for the process;
// there are as many as shape classes, a bounded number).
const Plan& plan_for(const Gemm& g, const Alignments& al) {
  static std::map<PlanKey, Plan> plans;
  Gemm at_bucket = g;
  (g.tokens == Gemm::Tokens::kN ? at_bucket.n : at_bucket.k) =
      bucket(g.tokens == Gemm::Tokens::kN ? g.n : g.k);
  const Gemm& c = at_bucket;
  const PlanKey key{c.trans_a, c.trans_b, c.m,      c.n,  c.k,  c.lda, c.ldb,
                    c.ldd,     c.ab_type, c.d_type, al.a, al.b, al.d};
  auto it = plans.find(key);
  if (it == plans.end()) {
    Plan p;
    p.desc = make_desc(c);
    p.algo = choose_algo(c, p.desc, al);
    it = plans.emplace(key, p).first;
  }
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
  const Alignments al{alignment(g.a), alignment(g.b), alignment(g.d)};
  const Plan& p = plan_for(g, al);
  const Layouts l(g);
  const float alpha = 1.0f;
  const auto matmul = [&](const cublasLtMatmulAlgo_t& algo) {
    return cublasLtMatmul(blas(), p.desc, &alpha, g.a, l.a, g.b, l.b, &g.beta, g.d, l.d, g.d, l.d,
                          &algo, workspace, kWorkspaceBytes, stream_of(ctx));
  };
  const cublasStatus_t status = matmul(p.algo);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED || status == CUBLAS_STATUS_INVALID_VALUE) {
    static bool warned = false;  // once a process: it costs a heuristic call a product
    if (!warned) {
      warned = true;
      log_warn(
          "linear: cuBLASLt refused the algorithm of a row bucket at m {} n {} k {} ({}); "
          "such calls choose their own",
          g.m, g.n, g.k, cublasLtGetStatusString(status));
    }
    TMT_CUBLAS_CHECK(matmul(choose_algo(g, p.desc, al)));
    return;
  }
  TMT_CUBLAS_CHECK(status);
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
  g.tokens = Gemm::Tokens::kN;
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
    g.tokens = Gemm::Tokens::kN;
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
    g.tokens = Gemm::Tokens::kK;
    gemm(ctx, g, "linear_bwd");
  }
}

}  // namespace tmt::cuda
