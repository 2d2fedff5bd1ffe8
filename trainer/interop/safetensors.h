// Reading and writing the safetensors format: an 8-byte little-endian header length N, N bytes of
// JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then
// the raw little-endian tensor data (offsets relative to its start).
//
// MappedSafetensors maps a file read-only and checks its header (every tensor's dtype, shape and
// offsets against the file's size and each other) before any tensor is read; a tensor's bytes are
// then a view into the map, paged in when touched and released after use, so a model of any size
// is read tensor by tensor (import). SafetensorsWriter writes one file tensor by tensor from a
// declaration of all of them (export). SafetensorsFile holds a small file whole in memory (the
// reference fixtures).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "kernels/base/tensor.h"

namespace tmt {

// A tensor's entry in a safetensors header.
struct TensorEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets relative to the data section

  int64_t numel() const;
};

// "F32", "BF16", ... (the format's spelling).
std::string safetensors_dtype_name(DType t);
// "[8, 4096]".
std::string shape_text(const std::vector<int64_t>& shape);

class MappedSafetensors {
 public:
  // Maps and checks the file; InputError naming the path, and the tensor and byte offset at fault
  // (a short file, a header that is not JSON, an unknown dtype, offsets that do not match the
  // shape, overlap another tensor or run past the end of the file).
  explicit MappedSafetensors(const std::string& path);
  ~MappedSafetensors();
  MappedSafetensors(MappedSafetensors&& other) noexcept;
  MappedSafetensors& operator=(MappedSafetensors&&) = delete;
  MappedSafetensors(const MappedSafetensors&) = delete;
  MappedSafetensors& operator=(const MappedSafetensors&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorEntry>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorEntry* find(const std::string& name) const;
  std::span<const std::byte> bytes(const TensorEntry& t) const;
  // Drops the pages of a tensor already read from this process's resident set.
  void release(const TensorEntry& t) const;

 private:
  std::string path_;
  const std::byte* map_ = nullptr;
  size_t map_bytes_ = 0;
  uint64_t data_start_ = 0;
  std::vector<TensorEntry> tensors_;
  std::map<std::string, size_t> by_name_;
  std::map<std::string, std::string> metadata_;
};

// Writes `path` (through a temporary file renamed into place): the header of `tensors` (their
// offsets are assigned in order), then each tensor's bytes from fill(i, out), in order; out has
// exactly tensors[i]'s size. Throws InputError naming the path when it cannot be written.
void write_safetensors(const std::string& path, std::vector<TensorEntry> tensors,
                       const std::map<std::string, std::string>& metadata,
                       const std::function<void(size_t, std::span<std::byte>)>& fill);

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
