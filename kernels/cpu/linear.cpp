#include "kernels/cpu/linear.h"

#include <cblas.h>

#include <algorithm>

namespace tmt::cpu {
namespace {

// Row-major C[m, n] = alpha * op(A) @ op(B) + beta * C with op(A) [m, k] and op(B) [k, n].
// Leading dimensions are the stored row lengths; BLAS wants them >= 1 even for empty matrices.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  const auto ta = trans_a ? CblasTrans : CblasNoTrans;
  const auto tb = trans_b ? CblasTrans : CblasNoTrans;
  const auto mi = static_cast<blasint>(m), ni = static_cast<blasint>(n);
  const auto ki = static_cast<blasint>(k);
  const auto la = static_cast<blasint>(std::max<int64_t>(lda, 1));
  const auto lb = static_cast<blasint>(std::max<int64_t>(ldb, 1));
  const auto lc = static_cast<blasint>(std::max<int64_t>(ldc, 1));
  if constexpr (std::is_same_v<T, double>) {
    cblas_dgemm(CblasRowMajor, ta, tb, mi, ni, ki, 1.0, a, la, b, lb, beta, c, lc);
  } else {
    cblas_sgemm(CblasRowMajor, ta, tb, mi, ni, ki, 1.0f, a, la, b, lb, beta, c, lc);
  }
}

template <class T>
void fwd(const Tensor& y, const Tensor& x, const Tensor& weight, bool accumulate) {
  const int64_t n_tokens = x.size(0), k = x.size(1), n = weight.size(0);
  // y[T, N] = x[T, K] @ weight[N, K]^T
  gemm<T>(false, true, n_tokens, n, k, x.ptr<const T>(), k, weight.ptr<const T>(), k,
          accumulate ? T(1) : T(0), y.ptr<T>(), n);
}

template <class T>
void bwd(const Tensor& dx, const Tensor& dweight, const Tensor& dy, const Tensor& x,
         const Tensor& weight, bool accumulate_dx) {
  const int64_t n_tokens = x.size(0), k = x.size(1), n = weight.size(0);
  if (dx.defined()) {
    // dx[T, K] = dy[T, N] @ weight[N, K]
    gemm<T>(false, false, n_tokens, k, n, dy.ptr<const T>(), n, weight.ptr<const T>(), k,
            accumulate_dx ? T(1) : T(0), dx.ptr<T>(), k);
  }
  if (dweight.defined()) {
    // dweight[N, K] += dy[T, N]^T @ x[T, K]
    gemm<T>(true, false, n, k, n_tokens, dy.ptr<const T>(), n, x.ptr<const T>(), k, T(1),
            dweight.ptr<T>(), k);
  }
}

}  // namespace

void linear_fwd(const Tensor& y, const Tensor& x, const Tensor& weight, bool accumulate) {
  if (x.dtype == DType::kF64) return fwd<double>(y, x, weight, accumulate);
  fwd<float>(y, x, weight, accumulate);
}

void linear_bwd(const Tensor& dx, const Tensor& dweight, const Tensor& dy, const Tensor& x,
                const Tensor& weight, bool accumulate_dx) {
  if (x.dtype == DType::kF64) return bwd<double>(dx, dweight, dy, x, weight, accumulate_dx);
  bwd<float>(dx, dweight, dy, x, weight, accumulate_dx);
}

}  // namespace tmt::cpu
