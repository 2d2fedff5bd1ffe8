// Reading and writing the safetensors format: an 8-byte little-endian header length N, N bytes of
// JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then
// the raw little-endian tensor data (offsets relative to its start). Used for the PyTorch reference
// fixtures, and readable by any safetensors tool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kernels/base/tensor.h"

namespace tmt {

struct StoredTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;

  int64_t numel() const;
  // A host Tensor viewing these bytes (valid while this object lives and is not moved).
  Tensor view();
  double at(int64_t i) const { return load_element(dtype, bytes.data(), static_cast<size_t>(i)); }
};

struct SafetensorsFile {
  std::vector<StoredTensor> tensors;
  std::map<std::string, std::string> metadata;

  // Throws InputError naming the path (and the byte offset or tensor) when the file is malformed.
  static SafetensorsFile read(const std::string& path);
  void write(const std::string& path) const;

  const StoredTensor* find(const std::string& name) const;
  StoredTensor& add(const std::string& name, DType dtype, std::vector<int64_t> shape);
  // Copies a host tensor in.
  StoredTensor& add(const std::string& name, const Tensor& t);
};

}  // namespace tmt
