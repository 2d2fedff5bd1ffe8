#include "trainer/interop/safetensors.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "kernels/base/check.h"

namespace tmt {
namespace {

constexpr std::pair<DType, const char*> kDtypeNames[] = {
    {DType::kF64, "F64"}, {DType::kF32, "F32"},        {DType::kBF16, "BF16"},
    {DType::kF16, "F16"}, {DType::kF8E4M3, "F8_E4M3"}, {DType::kF8E5M2, "F8_E5M2"},
    {DType::kI32, "I32"}, {DType::kI64, "I64"}};

// A header larger than this is not a safetensors header (the format's own readers cap it at
// 100 MB).
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

}  // namespace

std::string safetensors_dtype_name(DType t) {
  for (const auto& [d, n] : kDtypeNames) {
    if (d == t) return n;
  }
  TMT_CHECK(false, "safetensors: no name for dtype {}", dtype_name(t));
  return "";
}

std::string shape_text(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

int64_t TensorEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

MappedSafetensors::MappedSafetensors(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) input_error("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    input_error("{}: cannot stat: {}", path, std::strerror(errno));
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    input_error("{}: {} bytes, shorter than the 8-byte header length", path, size);
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) input_error("{}: cannot map: {}", path, std::strerror(errno));
  map_ = static_cast<const std::byte*>(m);
  map_bytes_ = size;
  // A constructor that throws runs no destructor: the checks below unmap the file themselves.
  struct UnmapOnThrow {
    MappedSafetensors* self;
    int uncaught = std::uncaught_exceptions();
    ~UnmapOnThrow() {
      if (std::uncaught_exceptions() > uncaught) {
        ::munmap(const_cast<std::byte*>(self->map_), self->map_bytes_);
        self->map_ = nullptr;
      }
    }
  } unmap_on_throw{this};
  ::madvise(m, size, MADV_SEQUENTIAL);

  uint64_t header_len = 0;
  std::memcpy(&header_len, map_, 8);
  if (header_len > size - 8 || header_len > kMaxHeaderBytes) {
    input_error("{}: at byte 0: header length {} runs past the end of the file ({} bytes)", path,
                header_len, size);
  }
  data_start_ = 8 + header_len;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(reinterpret_cast<const char*>(map_) + 8,
                              reinterpret_cast<const char*>(map_) + data_start_);
  } catch (const nlohmann::json::exception& e) {
    input_error("{}: at byte 8: the header is not JSON: {}", path, e.what());
  }
  if (!j.is_object()) input_error("{}: at byte 8: the header is not a JSON object", path);
  for (const auto& item : j.items()) {
    // Not a structured binding: clang before 16 cannot capture one in the lambda below.
    const std::string& name = item.key();
    const nlohmann::json& value = item.value();
    if (name == "__metadata__") {
      if (!value.is_object()) input_error("{}: __metadata__ is not an object", path);
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) input_error("{}: __metadata__.{} is not a string", path, k);
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    const auto bad = [&](const std::string& what) {
      input_error("{}: tensor {}: {}", path, name, what);
    };
    if (!value.is_object()) bad("its entry is not an object");
    TensorEntry t;
    t.name = name;
    const auto dtype = value.find("dtype");
    if (dtype == value.end() || !dtype->is_string()) bad("no dtype");
    bool known = false;
    for (const auto& [d, n] : kDtypeNames) {
      if (*dtype == n) {
        t.dtype = d;
        known = true;
      }
    }
    if (!known) bad(fmt::format("unsupported dtype {}", dtype->dump()));
    const auto shape = value.find("shape");
    if (shape == value.end() || !shape->is_array()) bad("no shape");
    for (const auto& d : *shape) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) bad("a shape entry is not a size");
      t.shape.push_back(d.get<int64_t>());
    }
    const auto offsets = value.find("data_offsets");
    if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2 ||
        !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
      bad("no data_offsets [begin, end]");
    }
    t.begin = (*offsets)[0].get<uint64_t>();
    t.end = (*offsets)[1].get<uint64_t>();
    int64_t numel = 1;  // as numel() multiplies, so that it cannot overflow later
    uint64_t want = 0;
    for (const int64_t d : t.shape) {
      if (__builtin_mul_overflow(numel, d, &numel))
        bad(fmt::format("its shape {} has more than 2^63 elements", shape_text(t.shape)));
    }
    if (__builtin_mul_overflow(static_cast<uint64_t>(numel), dtype_size(t.dtype), &want))
      bad(fmt::format("its shape {} has more than 2^64 bytes", shape_text(t.shape)));
    if (t.end < t.begin || t.end - t.begin != want) {
      bad(fmt::format("data_offsets [{}, {}] hold {} bytes, its shape {} of {} needs {}", t.begin,
                      t.end, t.end - std::min(t.begin, t.end), shape_text(t.shape),
                      safetensors_dtype_name(t.dtype), want));
    }
    if (t.end > size - data_start_) {  // not data_start_ + t.end: that wraps for a huge end
      bad(
          fmt::format("its data ends past the end of the file (data_offsets end {}, {} bytes of "
                      "data): truncated?",
                      t.end, size - data_start_));
    }
    by_name_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }
  // No two tensors share bytes.
  std::vector<const TensorEntry*> sorted;
  for (const TensorEntry& t : tensors_) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](const TensorEntry* a, const TensorEntry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i]->begin < sorted[i - 1]->end) {
      input_error("{}: tensor {}: its data at byte {} overlaps tensor {}", path, sorted[i]->name,
                  data_start_ + sorted[i]->begin, sorted[i - 1]->name);
    }
  }
}

MappedSafetensors::~MappedSafetensors() {
  if (map_ != nullptr) ::munmap(const_cast<std::byte*>(map_), map_bytes_);
}

MappedSafetensors::MappedSafetensors(MappedSafetensors&& o) noexcept
    : path_(std::move(o.path_)),
      map_(o.map_),
      map_bytes_(o.map_bytes_),
      data_start_(o.data_start_),
      tensors_(std::move(o.tensors_)),
      by_name_(std::move(o.by_name_)),
      metadata_(std::move(o.metadata_)) {
  o.map_ = nullptr;
}

const TensorEntry* MappedSafetensors::find(const std::string& name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

std::span<const std::byte> MappedSafetensors::bytes(const TensorEntry& t) const {
  return {map_ + data_start_ + t.begin, t.end - t.begin};
}

void MappedSafetensors::release(const TensorEntry& t) const {
  // madvise wants a page-aligned start; the partial pages at either end may stay.
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(map_ + data_start_ + t.begin);
  const auto end = reinterpret_cast<uintptr_t>(map_ + data_start_ + t.end);
  const uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

void write_safetensors(const std::string& path, std::vector<TensorEntry> tensors,
                       const std::map<std::string, std::string>& metadata,
                       const std::function<void(size_t, std::span<std::byte>)>& fill) {
  nlohmann::json j = nlohmann::json::object();
  uint64_t offset = 0;
  for (TensorEntry& t : tensors) {
    t.begin = offset;
    t.end = offset + static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype);
    offset = t.end;
    j[t.name] = {{"dtype", safetensors_dtype_name(t.dtype)},
                 {"shape", t.shape},
                 {"data_offsets", {t.begin, t.end}}};
  }
  if (!metadata.empty()) j["__metadata__"] = metadata;
  std::string header = j.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  const std::string tmp = path + ".tmp";
  std::FILE* out = std::fopen(tmp.c_str(), "wb");
  if (out == nullptr) input_error("{}: cannot write: {}", tmp, std::strerror(errno));
  bool ok = true;
  const uint64_t n = header.size();
  ok = ok && std::fwrite(&n, 8, 1, out) == 1;
  ok = ok && std::fwrite(header.data(), 1, n, out) == n;
  std::vector<std::byte> buffer;
  for (size_t i = 0; i < tensors.size() && ok; ++i) {
    buffer.resize(tensors[i].end - tensors[i].begin);
    fill(i, buffer);
    ok = std::fwrite(buffer.data(), 1, buffer.size(), out) == buffer.size();
  }
  ok = std::fflush(out) == 0 && ok;
  ok = ::fsync(::fileno(out)) == 0 && ok;
  ok = std::fclose(out) == 0 && ok;
  if (!ok) input_error("{}: cannot write: {}", tmp, std::strerror(errno));
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) input_error("{}: cannot rename into place: {}", path, ec.message());
}

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
  const MappedSafetensors map(path);
  SafetensorsFile f;
  f.metadata = map.metadata();
  // In the file's order of data, as the format stores it.
  std::vector<const TensorEntry*> order;
  for (const TensorEntry& t : map.tensors()) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const TensorEntry* a, const TensorEntry* b) { return a->begin < b->begin; });
  for (const TensorEntry* e : order) {
    StoredTensor& t = f.add(e->name, e->dtype, e->shape);
    const auto src = map.bytes(*e);
    if (!src.empty()) std::memcpy(t.bytes.data(), src.data(), src.size());  // [0] has no data()
  }
  return f;
}

void SafetensorsFile::write(const std::string& path) const {
  std::vector<TensorEntry> entries;
  for (const StoredTensor& t : tensors) entries.push_back({t.name, t.dtype, t.shape});
  write_safetensors(path, entries, metadata, [&](size_t i, std::span<std::byte> out) {
    std::memcpy(out.data(), tensors[i].bytes.data(), out.size());
  });
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
