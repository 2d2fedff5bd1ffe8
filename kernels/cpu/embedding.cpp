#include "kernels/cpu/embedding.h"

namespace tmt::cpu {
namespace {

// The row of the local table that global id `id` maps to, or -1 when another rank owns it.
int64_t local_row(int32_t id, int64_t vocab_start, int64_t v_local) {
  const int64_t row = static_cast<int64_t>(id) - vocab_start;
  return (row >= 0 && row < v_local) ? row : -1;
}

template <class T>
void fwd(const Tensor& out, const Tensor& ids, const Tensor& table, int64_t vocab_start) {
  const int64_t n_tokens = ids.size(0), v_local = table.size(0), d = table.size(1);
  const int32_t* id = ids.ptr<const int32_t>();
  const T* w = table.ptr<const T>();
  T* y = out.ptr<T>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int64_t row = local_row(id[t], vocab_start, v_local);
    T* dst = y + t * d;
    for (int64_t j = 0; j < d; ++j) dst[j] = row >= 0 ? w[row * d + j] : T(0);
  }
}

template <class T>
void bwd(const Tensor& dtable, const Tensor& dout, const Tensor& ids, int64_t vocab_start) {
  const int64_t n_tokens = ids.size(0), v_local = dtable.size(0), d = dtable.size(1);
  const int32_t* id = ids.ptr<const int32_t>();
  const T* dy = dout.ptr<const T>();
  T* dw = dtable.ptr<T>();
  // Several tokens may share an id, so tokens are visited in order (no race, and a fixed summation
  // order); the columns of one row are independent.
  for (int64_t t = 0; t < n_tokens; ++t) {
    const int64_t row = local_row(id[t], vocab_start, v_local);
    if (row < 0) continue;
    for (int64_t j = 0; j < d; ++j) dw[row * d + j] += dy[t * d + j];
  }
}

}  // namespace

void embedding_fwd(const Tensor& out, const Tensor& ids, const Tensor& table, int64_t vocab_start) {
  if (table.dtype == DType::kF64) return fwd<double>(out, ids, table, vocab_start);
  fwd<float>(out, ids, table, vocab_start);
}

void embedding_bwd(const Tensor& dtable, const Tensor& dout, const Tensor& ids,
                   int64_t vocab_start) {
  if (dtable.dtype == DType::kF64) return bwd<double>(dtable, dout, ids, vocab_start);
  bwd<float>(dtable, dout, ids, vocab_start);
}

}  // namespace tmt::cpu
