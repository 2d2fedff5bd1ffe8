#include "data/shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

#include "kernels/base/check.h"
#include "kernels/base/crc32c.h"

namespace tmt {
namespace {

constexpr char kMagic[8] = {'T', 'M', 'T', 'S', 'H', 'A', 'R', 'D'};

template <class T>
T read_le(const unsigned char* p) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<T>(p[i]) << (8 * i));
  return v;
}

template <class T>
void write_le(std::string& out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

}  // namespace

void write_shard(const std::string& path, std::span<const uint32_t> tokens, uint32_t vocab_size) {
  uint32_t max_token = 0;
  for (uint32_t t : tokens) max_token = std::max(max_token, t);
  const uint32_t width = max_token < 65536 ? 2 : 4;
  std::string header(kMagic, 8);
  write_le<uint32_t>(header, kShardVersion);
  write_le<uint32_t>(header, width);
  write_le<uint64_t>(header, tokens.size());
  write_le<uint32_t>(header, vocab_size);
  write_le<uint32_t>(header, 0);
  std::string body;
  body.reserve(tokens.size() * width);
  for (uint32_t t : tokens) {
    if (width == 2) {
      write_le<uint16_t>(body, static_cast<uint16_t>(t));
    } else {
      write_le<uint32_t>(body, t);
    }
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    out.write(body.data(), static_cast<std::streamsize>(body.size()));
    if (!out) input_error("{}: cannot write: {}", tmp, std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) input_error("{}: cannot rename {} into place: {}", path, tmp, ec.message());
}

Shard::Shard(const std::string& path) : path_(path) {
  const int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) input_error("{}: cannot open the shard: {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    input_error("{}: not a regular file", path);
  }
  const auto bytes = static_cast<size_t>(st.st_size);
  if (bytes < kShardHeaderBytes) {
    close(fd);
    input_error("{}: {} bytes is shorter than the {}-byte shard header (truncated?)", path, bytes,
                kShardHeaderBytes);
  }
  void* m = mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (m == MAP_FAILED) input_error("{}: cannot map the shard: {}", path, std::strerror(errno));
  map_ = static_cast<const unsigned char*>(m);
  map_bytes_ = bytes;
  device_ = static_cast<uint64_t>(st.st_dev);
  inode_ = static_cast<uint64_t>(st.st_ino);
  header_crc_ = crc32c(std::string_view(reinterpret_cast<const char*>(map_), kShardHeaderBytes));
  auto fail = [&](const std::string& what) {
    munmap(const_cast<unsigned char*>(map_), map_bytes_);
    map_ = nullptr;
    input_error("{}: {}", path, what);
  };
  if (std::memcmp(map_, kMagic, 8) != 0)
    fail("not a token shard (bad magic at byte 0; expected \"TMTSHARD\")");
  const auto version = read_le<uint32_t>(map_ + 8);
  if (version != kShardVersion) {
    fail(fmt::format("unsupported shard format version {} at byte 8 (this build reads version {})",
                     version, kShardVersion));
  }
  width_ = read_le<uint32_t>(map_ + 12);
  if (width_ != 2 && width_ != 4)
    fail(fmt::format("token width {} at byte 12 is neither 2 nor 4", width_));
  const auto count = read_le<uint64_t>(map_ + 16);
  vocab_size_ = read_le<uint32_t>(map_ + 24);
  const uint64_t expected = kShardHeaderBytes + count * width_;
  if (count > (bytes - kShardHeaderBytes) / width_ + 1 || expected != bytes) {
    fail(fmt::format("the header promises {} tokens ({} bytes) but the file has {} bytes ({})",
                     count, expected, bytes, bytes < expected ? "truncated" : "trailing bytes"));
  }
  count_ = static_cast<int64_t>(count);
}

Shard::~Shard() {
  if (map_ != nullptr) munmap(const_cast<unsigned char*>(map_), map_bytes_);
}

Shard::Shard(Shard&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      map_bytes_(other.map_bytes_),
      device_(other.device_),
      inode_(other.inode_),
      header_crc_(other.header_crc_),
      count_(other.count_),
      width_(other.width_),
      vocab_size_(other.vocab_size_) {}

uint32_t Shard::token(int64_t i) const {
  const unsigned char* p = map_ + kShardHeaderBytes + static_cast<size_t>(i) * width_;
  return width_ == 2 ? read_le<uint16_t>(p) : read_le<uint32_t>(p);
}

void Shard::read(int64_t begin, std::span<int32_t> out) const {
  TMT_CHECK(begin >= 0 && begin + static_cast<int64_t>(out.size()) <= count_,
            "{}: read [{}, {}) of {} tokens", path_, begin,
            begin + static_cast<int64_t>(out.size()), count_);
  // Reading a page of the mapping past the end of a file that shrank would raise SIGBUS. Only this
  // rank knows, in the middle of a step: the job ends here with status 2.
  struct stat st {};
  const bool stat_ok = stat(path_.c_str(), &st) == 0;
  if (!stat_ok || static_cast<size_t>(st.st_size) != map_bytes_ ||
      static_cast<uint64_t>(st.st_ino) != inode_ || static_cast<uint64_t>(st.st_dev) != device_) {
    input_fatal(fmt::format(
        "{}: the shard changed while the job was reading it ({} bytes when opened, {} now{}); "
        "restore it or start a new run on the new data",
        path_, map_bytes_, stat_ok ? std::to_string(st.st_size) : "unknown",
        stat_ok && static_cast<uint64_t>(st.st_ino) != inode_ ? ", another file" : ""));
  }
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<int32_t>(token(begin + static_cast<int64_t>(i)));
}

void Shard::check_unchanged() const {
  const auto changed = [&](const std::string& how) {
    input_error(
        "{}: the shard changed while the job was reading it ({}); restore it or start a new run "
        "on the new data",
        path_, how);
  };
  const int fd = open(path_.c_str(), O_RDONLY);
  if (fd < 0) changed(fmt::format("cannot open it now: {}", std::strerror(errno)));
  struct stat st {};
  unsigned char header[kShardHeaderBytes] = {};
  const bool stat_ok = fstat(fd, &st) == 0;
  const bool header_ok =
      pread(fd, header, kShardHeaderBytes, 0) == static_cast<ssize_t>(kShardHeaderBytes);
  close(fd);
  if (!stat_ok || static_cast<size_t>(st.st_size) != map_bytes_) {
    changed(fmt::format("{} bytes when opened, {} now", map_bytes_,
                        stat_ok ? std::to_string(st.st_size) : "unknown"));
  }
  if (static_cast<uint64_t>(st.st_dev) != device_ || static_cast<uint64_t>(st.st_ino) != inode_)
    changed("the path names another file now: replaced");
  if (!header_ok || crc32c(std::string_view(reinterpret_cast<const char*>(header),
                                            kShardHeaderBytes)) != header_crc_)
    changed("its header is not the one it had when opened");
}

void Shard::check_vocab(int64_t vocab_size) const {
  for (int64_t i = 0; i < count_; ++i) {
    const uint32_t t = token(i);
    if (static_cast<int64_t>(t) >= vocab_size) {
      input_error("{}: token {} at index {} (byte offset {}) is >= model.vocab_size {}", path_, t,
                  i, kShardHeaderBytes + static_cast<size_t>(i) * width_, vocab_size);
    }
  }
}

}  // namespace tmt
