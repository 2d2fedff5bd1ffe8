#include "trainer/interop/safetensors.h"

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kernels/base/check.h"

namespace tmt {
namespace {

const std::map<DType, std::string>& dtype_names() {
  static const std::map<DType, std::string> names = {
      {DType::kF64, "F64"}, {DType::kF32, "F32"},        {DType::kBF16, "BF16"},
      {DType::kF16, "F16"}, {DType::kF8E4M3, "F8_E4M3"}, {DType::kF8E5M2, "F8_E5M2"},
      {DType::kI32, "I32"}, {DType::kI64, "I64"}};
  return names;
}

}  // namespace

int64_t StoredTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Tensor StoredTensor::view() {
  Tensor t;
  t.data = bytes.data();
  t.dtype = dtype;
  t.device = Device::kCpu;
  t.shape = Shape(shape.data(), static_cast<int>(shape.size()));
  return t;
}

SafetensorsFile SafetensorsFile::read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) input_error("{}: cannot open", path);
  in.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  uint64_t header_len = 0;
  if (size < 8 || !in.read(reinterpret_cast<char*>(&header_len), 8))
    input_error("{}: shorter than 8 bytes", path);
  if (header_len > size - 8)
    input_error("{}: header length {} runs past the end of the file ({} bytes)", path, header_len,
                size);
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(header);
  } catch (const nlohmann::json::exception& e) {
    input_error("{}: header is not JSON: {}", path, e.what());
  }
  const uint64_t data_start = 8 + header_len;
  SafetensorsFile f;
  for (const auto& [name, value] : j.items()) {
    if (name == "__metadata__") {
      for (const auto& [k, v] : value.items()) f.metadata[k] = v.get<std::string>();
      continue;
    }
    StoredTensor t;
    t.name = name;
    bool known = false;
    for (const auto& [dt, dn] : dtype_names()) {
      if (value.value("dtype", "") == dn) {
        t.dtype = dt;
        known = true;
      }
    }
    if (!known)
      input_error("{}: tensor {}: unsupported dtype {}", path, name, value.value("dtype", "?"));
    t.shape = value.at("shape").get<std::vector<int64_t>>();
    const auto offsets = value.at("data_offsets").get<std::vector<uint64_t>>();
    const uint64_t want = static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype);
    if (offsets.size() != 2 || offsets[1] < offsets[0] || offsets[1] - offsets[0] != want ||
        data_start + offsets[1] > size) {
      input_error("{}: tensor {}: data offsets do not fit its shape or the file (at byte {})", path,
                  name, data_start + (offsets.empty() ? 0 : offsets[0]));
    }
    t.bytes.resize(want);
    in.seekg(static_cast<std::streamoff>(data_start + offsets[0]));
    in.read(reinterpret_cast<char*>(t.bytes.data()), static_cast<std::streamsize>(want));
    f.tensors.push_back(std::move(t));
  }
  return f;
}

void SafetensorsFile::write(const std::string& path) const {
  nlohmann::json j;
  uint64_t offset = 0;
  for (const StoredTensor& t : tensors) {
    j[t.name] = {{"dtype", dtype_names().at(t.dtype)},
                 {"shape", t.shape},
                 {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  if (!metadata.empty()) j["__metadata__"] = metadata;
  std::string header = j.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // align the data to 8 bytes
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(header.data(), static_cast<std::streamsize>(n));
  for (const StoredTensor& t : tensors)
    out.write(reinterpret_cast<const char*>(t.bytes.data()),
              static_cast<std::streamsize>(t.bytes.size()));
  if (!out) input_error("{}: cannot write", path);
}

const StoredTensor* SafetensorsFile::find(const std::string& name) const {
  for (const StoredTensor& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

StoredTensor& SafetensorsFile::add(const std::string& name, DType dtype,
                                   std::vector<int64_t> shape) {
  StoredTensor t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes.resize(static_cast<size_t>(t.numel()) * dtype_size(dtype));
  tensors.push_back(std::move(t));
  return tensors.back();
}

StoredTensor& SafetensorsFile::add(const std::string& name, const Tensor& t) {
  TMT_CHECK(t.device == Device::kCpu, "safetensors: {} is not on the host", name);
  std::vector<int64_t> shape;
  for (int i = 0; i < t.rank(); ++i) shape.push_back(t.size(i));
  StoredTensor& s = add(name, t.dtype, shape);
  std::memcpy(s.bytes.data(), t.data, t.nbytes());
  return s;
}

}  // namespace tmt
