#include "trainer/metrics/tensorboard.h"

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "kernels/base/check.h"
#include "kernels/base/crc32c.h"

namespace tmt {
namespace {

// Protocol-buffer wire format: varints, and fields as (number << 3 | wire type).
void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void tag(std::string& out, int field, int wire) {
  varint(out, static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire));
}
template <class T>
void fixed(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}
void bytes_field(std::string& out, int field, const std::string& v) {
  tag(out, field, 2);
  varint(out, v.size());
  out += v;
}

double wall_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t masked_crc32c(std::string_view bytes) {
  const uint32_t c = crc32c(bytes);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  path_ = (std::filesystem::path(dir) /
           fmt::format("events.out.tfevents.{}.{}", static_cast<int64_t>(wall_time()), host_name()))
              .string();
  out_.open(path_, std::ios::binary | std::ios::trunc);
  if (ec || !out_) input_error("log.tensorboard: cannot write {}", path_);
  std::string event;
  tag(event, 1, 1);  // wall_time: double
  fixed(event, wall_time());
  bytes_field(event, 3, "brain.Event:2");  // file_version
  record(event);
}

void TensorBoardWriter::scalar(const std::string& name, int64_t step, double value) {
  std::string v;  // Summary.Value { tag = 1, simple_value = 2 (float) }
  bytes_field(v, 1, name);
  tag(v, 2, 5);
  fixed(v, static_cast<float>(value));
  std::string summary;  // Summary { repeated Value value = 1 }
  bytes_field(summary, 1, v);
  std::string event;  // Event { wall_time = 1, step = 2, summary = 5 }
  tag(event, 1, 1);
  fixed(event, wall_time());
  tag(event, 2, 0);
  varint(event, static_cast<uint64_t>(step));
  bytes_field(event, 5, summary);
  record(event);
}

void TensorBoardWriter::record(const std::string& payload) {
  std::string header;
  fixed(header, static_cast<uint64_t>(payload.size()));
  std::string rec = header;
  fixed(rec, masked_crc32c(header));
  rec += payload;
  fixed(rec, masked_crc32c(payload));
  out_.write(rec.data(), static_cast<std::streamsize>(rec.size()));
}

}  // namespace tmt
