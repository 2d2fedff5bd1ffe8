#include "kernels/cpu/slice.h"

namespace tmt::cpu {
namespace {

// dst[r, dst_col + j] (+)= Σ_{i < group} src[r / repeat · group + i, src_col + j]: copy_columns is
// group 1, sum_columns repeat 1.
template <class T>
void move_columns(const Tensor& dst, const Tensor& src, const ColumnBlock& b, int64_t repeat,
                  int64_t group, bool accumulate) {
  const int64_t rows = dst.size(0), a = dst.size(1), w = src.size(1);
  T* out = dst.ptr<T>();
  const T* in = src.ptr<const T>();
  for (int64_t r = 0; r < rows; ++r) {
    T* o = out + r * a + b.dst_col;
    const T* first = in + (r / repeat) * group * w + b.src_col;
    for (int64_t j = 0; j < b.width; ++j) {
      T sum = 0;
      for (int64_t i = 0; i < group; ++i) sum += first[i * w + j];
      o[j] = accumulate ? o[j] + sum : sum;
    }
  }
}

void dispatch(const Tensor& dst, const Tensor& src, const ColumnBlock& b, int64_t repeat,
              int64_t group, bool accumulate) {
  if (dst.dtype == DType::kF64) return move_columns<double>(dst, src, b, repeat, group, accumulate);
  move_columns<float>(dst, src, b, repeat, group, accumulate);
}

}  // namespace

void copy_columns(const Tensor& dst, const Tensor& src, const ColumnBlock& b, int64_t repeat,
                  bool accumulate) {
  dispatch(dst, src, b, repeat, 1, accumulate);
}

void sum_columns(const Tensor& dst, const Tensor& src, const ColumnBlock& b, int64_t group,
                 bool accumulate) {
  dispatch(dst, src, b, 1, group, accumulate);
}

}  // namespace tmt::cpu
