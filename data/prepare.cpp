#include "data/prepare.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "data/shard.h"
#include "data/tokenizer.h"
#include "kernels/base/check.h"

namespace tmt {
namespace {

namespace fs = std::filesystem;

// Text per thread in one chunk: enough that every thread has many documents to share.
constexpr size_t kChunkBytesPerThread = size_t{8} << 20;
constexpr int64_t kProgressInputBytes = int64_t{1} << 30;

std::vector<std::string> write_split(const fs::path& dir, std::span<const uint32_t> tokens,
                                     int64_t shard_tokens, uint32_t vocab) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) input_error("--out: cannot create {}: {}", dir.string(), ec.message());
  // Shards of an earlier run with other sizes would otherwise be read as part of this one.
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("shard-", 0) == 0 && e.path().extension() == ".bin") fs::remove(e.path());
  }
  std::vector<std::string> files;
  for (size_t begin = 0, i = 0; begin < tokens.size();
       begin += static_cast<size_t>(shard_tokens), ++i) {
    const size_t n = std::min(tokens.size() - begin, static_cast<size_t>(shard_tokens));
    const std::string path = (dir / fmt::format("shard-{:05}.bin", i)).string();
    write_shard(path, tokens.subspan(begin, n), vocab);
    files.push_back(path);
  }
  return files;
}

// The token stream, appended to a temporary file and mapped back once complete. Removed when done.
class TokenSpill {
 public:
  explicit TokenSpill(const fs::path& dir) : path_((dir / ".prepare-tokens.tmp").string()) {
    out_.open(path_, std::ios::binary | std::ios::trunc);
    if (!out_) input_error("--out: cannot write {}: {}", path_, std::strerror(errno));
  }
  ~TokenSpill() {
    if (map_) munmap(map_, bytes_);
    std::error_code ec;
    fs::remove(path_, ec);
  }
  TokenSpill(const TokenSpill&) = delete;
  TokenSpill& operator=(const TokenSpill&) = delete;

  void append(const std::vector<uint32_t>& t) {
    out_.write(reinterpret_cast<const char*>(t.data()),
               static_cast<std::streamsize>(t.size() * sizeof(uint32_t)));
    if (!out_) input_error("{}: cannot write: {}", path_, std::strerror(errno));
    count_ += t.size();
  }
  size_t size() const { return count_; }

  std::span<const uint32_t> finish() {
    out_.close();
    if (!out_) input_error("{}: cannot write: {}", path_, std::strerror(errno));
    if (count_ == 0) return {};
    const int fd = open(path_.c_str(), O_RDONLY);
    if (fd < 0) input_error("{}: cannot open: {}", path_, std::strerror(errno));
    bytes_ = count_ * sizeof(uint32_t);
    void* m = mmap(nullptr, bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) input_error("{}: cannot map: {}", path_, std::strerror(errno));
    map_ = m;
    return {static_cast<const uint32_t*>(m), count_};
  }

 private:
  std::string path_;
  std::ofstream out_;
  size_t count_ = 0;
  void* map_ = nullptr;
  size_t bytes_ = 0;
};

class Progress {
 public:
  explicit Progress(int64_t total_bytes)
      : on_(isatty(STDERR_FILENO) || total_bytes >= kProgressInputBytes), total_(total_bytes) {}
  void update(int64_t bytes, size_t tokens, bool last) {
    if (!on_) return;
    const auto now = Clock::now();
    if (!last && now - shown_ < std::chrono::seconds(5)) return;
    shown_ = now;
    const double s = std::chrono::duration<double>(now - start_).count();
    fmt::print(stderr, "prepare: {:.1f}/{:.1f} MB, {:.1f} MB/s, {:.2f} M tokens/s\n", bytes / 1e6,
               total_ / 1e6, bytes / 1e6 / s, static_cast<double>(tokens) / 1e6 / s);
  }

 private:
  using Clock = std::chrono::steady_clock;
  bool on_;
  int64_t total_;
  Clock::time_point start_ = Clock::now(), shown_ = Clock::now();
};

}  // namespace

int usable_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)));
}

std::string PrepareSummary::describe() const {
  return fmt::format("wrote {} train and {} validation tokens of {} document(s) in {} shard(s): {}",
                     train_tokens, val_tokens, documents, files.size(), fmt::join(files, ", "));
}

PrepareSummary prepare_shards(const PrepareOptions& o) {
  const auto tokenizer = make_tokenizer(o.tokenizer);
  if (o.inputs.empty()) input_error("prepare: no input files");
  if (!(o.val_fraction > 0 && o.val_fraction < 1)) {
    input_error("--val-fraction: must be in (0, 1), got {}", o.val_fraction);
  }
  if (o.shard_tokens < 1) input_error("prepare: shard size must be >= 1 token");
  if (o.threads < 0)
    input_error("--threads: must be >= 1 (or 0: every usable core), got {}", o.threads);
  if (o.format == InputFormat::kJsonl && o.json_key.empty()) input_error("--json-key: empty");
  const int threads = o.threads > 0 ? o.threads : usable_cores();

  DocumentReader reader(o.inputs, o.format);
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) input_error("--out: cannot create {}: {}", o.out_dir, ec.message());
  TokenSpill spill(o.out_dir);
  Progress progress(reader.total_bytes());
  std::vector<uint32_t> separator;  // between documents, for a tokenizer without BOS/EOS
  if (!tokenizer->bos() && !tokenizer->eos()) tokenizer->encode("\n", separator);

  PrepareSummary s;
  std::vector<Document> docs;
  std::vector<std::vector<uint32_t>> ids;
  std::vector<std::string> errors;
  while (reader.next_chunk(kChunkBytesPerThread * static_cast<size_t>(threads), docs)) {
    const auto n = static_cast<int64_t>(docs.size());
    ids.assign(docs.size(), {});
    errors.assign(docs.size(), {});
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t i = 0; i < n; ++i) {
      try {
        const std::string text = document_text(docs[i], o.format, o.json_key);
        if (auto b = tokenizer->bos()) ids[i].push_back(*b);
        tokenizer->encode(text, ids[i]);
        if (auto e = tokenizer->eos()) ids[i].push_back(*e);
      } catch (const InputError& e) {
        errors[i] = fmt::format("{}: {}", reader.where(docs[i]), e.what());
      }
    }
    for (int64_t i = 0; i < n; ++i) {  // the first bad document, whatever the thread count
      if (!errors[i].empty()) throw InputError(errors[i]);
    }
    for (int64_t i = 0; i < n; ++i) {
      if (s.documents++ > 0 && !separator.empty()) spill.append(separator);
      spill.append(ids[i]);
    }
    progress.update(reader.bytes_read(), spill.size(), false);
  }
  progress.update(reader.bytes_read(), spill.size(), true);

  const std::span<const uint32_t> all = spill.finish();
  const auto total = static_cast<int64_t>(all.size());
  const int64_t val =
      std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(total) * o.val_fraction));
  if (total - val < 2) {
    input_error("{}: only {} tokens, too few to split into train and validation", o.inputs.front(),
                total);
  }
  s.train_tokens = total - val;
  s.val_tokens = val;
  s.files = write_split(fs::path(o.out_dir) / "train", all.first(static_cast<size_t>(total - val)),
                        o.shard_tokens, tokenizer->vocab_size());
  const auto v = write_split(fs::path(o.out_dir) / "val", all.last(static_cast<size_t>(val)),
                             o.shard_tokens, tokenizer->vocab_size());
  s.files.insert(s.files.end(), v.begin(), v.end());
  return s;
}

}  // namespace tmt
