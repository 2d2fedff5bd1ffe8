#include "data/prepare.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "data/shard.h"
#include "data/tokenizer.h"
#include "kernels/base/check.h"

namespace tmt {
namespace {

namespace fs = std::filesystem;

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

}  // namespace

std::string PrepareSummary::describe() const {
  return fmt::format("wrote {} train and {} validation tokens in {} shard(s): {}", train_tokens,
                     val_tokens, files.size(), fmt::join(files, ", "));
}

PrepareSummary prepare_shards(const PrepareOptions& o) {
  const auto tokenizer = make_tokenizer(o.tokenizer);
  if (o.inputs.empty()) input_error("prepare: no input files");
  if (!(o.val_fraction > 0 && o.val_fraction < 1)) {
    input_error("--val-fraction: must be in (0, 1), got {}", o.val_fraction);
  }
  if (o.shard_tokens < 1) input_error("prepare: shard size must be >= 1 token");
  std::vector<uint32_t> tokens;
  for (size_t i = 0; i < o.inputs.size(); ++i) {
    const std::string& path = o.inputs[i];
    if (fs::is_directory(path)) input_error("{}: is a directory, not a text file", path);
    std::ifstream in(path, std::ios::binary);
    if (!in) input_error("{}: cannot read: {}", path, std::strerror(errno));
    std::stringstream text;
    text << in.rdbuf();
    if (i > 0) tokenizer->encode("\n", tokens);
    tokenizer->encode(text.str(), tokens);
  }
  const auto total = static_cast<int64_t>(tokens.size());
  const int64_t val =
      std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(total) * o.val_fraction));
  if (total - val < 2) {
    input_error("{}: only {} tokens, too few to split into train and validation", o.inputs.front(),
                total);
  }
  PrepareSummary s;
  s.train_tokens = total - val;
  s.val_tokens = val;
  const std::span<const uint32_t> all(tokens);
  s.files = write_split(fs::path(o.out_dir) / "train", all.first(static_cast<size_t>(total - val)),
                        o.shard_tokens, tokenizer->vocab_size());
  const auto v = write_split(fs::path(o.out_dir) / "val", all.last(static_cast<size_t>(val)),
                             o.shard_tokens, tokenizer->vocab_size());
  s.files.insert(s.files.end(), v.begin(), v.end());
  return s;
}

}  // namespace tmt
