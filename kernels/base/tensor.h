// Tensor: a typed, shaped, non-owning view of memory on one device.
//
// Memory belongs to an Arena (arena.h) or to the caller; a Tensor is two words of metadata plus a
// pointer and is passed by value. Tensors are always dense and row-major (the last dim is
// contiguous); a view of a sub-range keeps that property by slicing the leading dimension only.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "kernels/base/check.h"
#include "kernels/base/dtype.h"

namespace tmt {

enum class Device : uint8_t { kCpu, kCuda };
std::string_view device_name(Device d);

class Shape {
 public:
  static constexpr int kMaxDims = 6;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  Shape(const int64_t* dims, int rank);

  int rank() const { return rank_; }
  int64_t operator[](int i) const { return dims_[static_cast<size_t>(i < 0 ? i + rank_ : i)]; }
  int64_t numel() const;
  Shape with(int dim, int64_t value) const;  // a copy with one dimension replaced
  bool operator==(const Shape& other) const;
  std::string str() const;  // "[4, 8, 16]"

 private:
  std::array<int64_t, kMaxDims> dims_{};
  int rank_ = 0;
};

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  Device device = Device::kCpu;
  Shape shape;

  int64_t numel() const { return shape.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  int64_t size(int dim) const { return shape[dim]; }
  int rank() const { return shape.rank(); }
  bool defined() const { return data != nullptr || numel() == 0; }

  // Typed pointer; checks that T matches the dtype (bf16/f16 read as uint16_t, fp8 as uint8_t).
  template <class T>
  T* ptr() const;

  // Same memory, another shape with the same number of elements.
  Tensor view(Shape s) const;
  // The n elements starting here as a 1-D tensor (n may exceed numel(): for a view over several
  // tensors laid out back to back in one arena).
  Tensor view_flat(int64_t n) const;
  // Rows [begin, end) of the leading dimension.
  Tensor slice(int64_t begin, int64_t end) const;
  std::string str() const;  // "f32[4, 8] cpu"
};

template <class T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<double>() {
  return DType::kF64;
}
template <>
constexpr DType dtype_of<float>() {
  return DType::kF32;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::kI32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::kI64;
}

template <class T>
T* Tensor::ptr() const {
  if constexpr (std::is_same_v<T, uint16_t> || std::is_same_v<T, const uint16_t>) {
    TMT_CHECK(dtype == DType::kBF16 || dtype == DType::kF16, "tensor {} read as 16-bit", str());
  } else if constexpr (std::is_same_v<T, uint8_t> || std::is_same_v<T, const uint8_t>) {
    TMT_CHECK(dtype == DType::kF8E4M3 || dtype == DType::kF8E5M2, "tensor {} read as 8-bit", str());
  } else {
    TMT_CHECK(dtype == dtype_of<std::remove_const_t<T>>(), "tensor {} read as {}", str(),
              dtype_name(dtype_of<std::remove_const_t<T>>()));
  }
  return static_cast<T*>(data);
}

}  // namespace tmt
