// TensorBoard event files, written directly: scalars only, no TensorFlow or protobuf library
// needed.
//
// An event file is a sequence of TFRecords — u64 length, u32 masked CRC-32C of the length bytes,
// the payload, u32 masked CRC-32C of the payload (little-endian) — whose payloads are serialized
// `Event` protocol buffers: the first carries file_version "brain.Event:2", each later one a wall
// time, a step and a Summary with one (tag, simple_value) pair. TensorBoard reads files named
// events.out.tfevents.* in the log directory.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <string_view>

#include "kernels/base/crc32c.h"

namespace tmt {

// The "masked" CRC-32C TFRecord stores.
uint32_t masked_crc32c(std::string_view bytes);

class TensorBoardWriter {
 public:
  // Creates dir if needed and a new event file in it; throws InputError when it cannot.
  explicit TensorBoardWriter(const std::string& dir);
  void scalar(const std::string& tag, int64_t step, double value);
  void flush() { out_.flush(); }
  const std::string& path() const { return path_; }

 private:
  void record(const std::string& payload);
  std::string path_;
  std::ofstream out_;
};

}  // namespace tmt
