#include "kernels/base/tensor.h"

#include <fmt/format.h>

namespace tmt {

std::string_view device_name(Device d) { return d == Device::kCpu ? "cpu" : "cuda"; }

Shape::Shape(std::initializer_list<int64_t> dims) {
  TMT_CHECK(dims.size() <= kMaxDims, "shape has {} dims, at most {} supported", dims.size(),
            kMaxDims);
  for (int64_t d : dims) {
    TMT_CHECK(d >= 0, "negative dimension {}", d);
    dims_[static_cast<size_t>(rank_++)] = d;
  }
}

Shape::Shape(const int64_t* dims, int rank) {
  TMT_CHECK(0 <= rank && rank <= kMaxDims, "shape has {} dims, at most {} supported", rank,
            kMaxDims);
  for (int i = 0; i < rank; ++i) {
    TMT_CHECK(dims[i] >= 0, "negative dimension {}", dims[i]);
    dims_[static_cast<size_t>(rank_++)] = dims[i];
  }
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<size_t>(i)];
  return n;
}

Shape Shape::with(int dim, int64_t value) const {
  TMT_CHECK(0 <= dim && dim < rank_ && value >= 0, "cannot set dim {} of {} to {}", dim, str(),
            value);
  Shape s = *this;
  s.dims_[static_cast<size_t>(dim)] = value;
  return s;
}

bool Shape::operator==(const Shape& other) const {
  if (rank_ != other.rank_) return false;
  for (int i = 0; i < rank_; ++i) {
    if (dims_[static_cast<size_t>(i)] != other.dims_[static_cast<size_t>(i)]) return false;
  }
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < rank_; ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(dims_[static_cast<size_t>(i)]);
  }
  return s + "]";
}

Tensor Tensor::view(Shape s) const {
  TMT_CHECK(s.numel() == numel(), "cannot view {} as {}", str(), s.str());
  Tensor t = *this;
  t.shape = s;
  return t;
}

Tensor Tensor::view_flat(int64_t n) const {
  Tensor t = *this;
  t.shape = Shape{n};
  return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  TMT_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= size(0),
            "slice [{}, {}) out of range for {}", begin, end, str());
  const int64_t row = size(0) == 0 ? 0 : numel() / size(0);
  Tensor t = *this;
  t.data = static_cast<char*>(data) + static_cast<size_t>(begin * row) * dtype_size(dtype);
  t.shape = shape.with(0, end - begin);
  return t;
}

std::string Tensor::str() const {
  return fmt::format("{}{} {}", dtype_name(dtype), shape.str(), device_name(device));
}

}  // namespace tmt
