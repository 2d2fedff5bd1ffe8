// Token shards: the on-disk format of tokenized training data, memory-mapped for reading.
//
// A shard file is a 32-byte header followed by the tokens, all little-endian:
//   bytes  0..7   magic "TMTSHARD"
//   bytes  8..11  format version, u32 = 1
//   bytes 12..15  token width in bytes, u32: 2 (uint16 tokens) or 4 (uint32 tokens)
//   bytes 16..23  token count N, u64
//   bytes 24..27  vocabulary size of the tokenizer that wrote it, u32 (0 = unknown)
//   bytes 28..31  reserved, u32 = 0
//   bytes 32..    N tokens of the given width; the file is exactly 32 + N·width bytes
//
// A shard must not change while a job reads it. A Shard records the file's size, identity (device,
// inode) and the CRC-32C of its header when it opens it; check_unchanged() compares them with the
// file the path names now (the trainer calls it every few steps, before each checkpoint and each
// validation), and every read first checks (one stat) that the path still names that file at that
// size, so a shard that shrinks under the job ends it with an `error:` line (exit 2) instead of
// SIGBUS in the mapping.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace tmt {

inline constexpr uint32_t kShardVersion = 1;
inline constexpr size_t kShardHeaderBytes = 32;

// Writes a shard atomically (a temporary file renamed into place), uint16 when every token fits.
void write_shard(const std::string& path, std::span<const uint32_t> tokens, uint32_t vocab_size);

class Shard {
 public:
  // Maps and validates the file; throws InputError naming it (and the byte offset) when it is bad.
  explicit Shard(const std::string& path);
  ~Shard();
  Shard(Shard&& other) noexcept;
  Shard& operator=(Shard&&) = delete;
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  const std::string& path() const { return path_; }
  int64_t size() const { return count_; }
  uint32_t width() const { return width_; }
  uint32_t vocab_size() const { return vocab_size_; }
  uint32_t token(int64_t i) const;
  // Copies tokens [begin, begin + out.size()) into out.
  void read(int64_t begin, std::span<int32_t> out) const;
  // Throws InputError at the first token >= vocab_size, with its index and byte offset.
  void check_vocab(int64_t vocab_size) const;
  // Throws InputError naming the file when the path no longer names the file as it was opened:
  // another size, another file (replaced), or another header.
  void check_unchanged() const;

 private:
  std::string path_;
  const unsigned char* map_ = nullptr;
  size_t map_bytes_ = 0;
  uint64_t device_ = 0, inode_ = 0;  // the file opened
  uint32_t header_crc_ = 0;
  int64_t count_ = 0;
  uint32_t width_ = 0;
  uint32_t vocab_size_ = 0;
};

}  // namespace tmt
