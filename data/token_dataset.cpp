#include "data/token_dataset.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "kernels/base/check.h"
#include "kernels/base/rng.h"

namespace tmt {

IndexPermutation::IndexPermutation(uint64_t n, uint64_t key) : n_(n), key_(key), half_bits_(1) {
  // The smallest even number of bits 2h with 2^(2h) >= n: a Feistel network permutes [0, 4^h).
  while ((uint64_t{1} << (2 * half_bits_)) < n && half_bits_ < 31) ++half_bits_;
}

uint64_t IndexPermutation::apply(uint64_t i) const {
  TMT_CHECK(i < n_, "permutation index {} outside [0, {})", i, n_);
  const uint64_t mask = (uint64_t{1} << half_bits_) - 1;
  uint64_t x = i;
  // Cycle walking: a permutation of the larger power-of-4 domain, applied until it lands in [0, n).
  do {
    uint64_t left = x >> half_bits_, right = x & mask;
    for (uint64_t round = 0; round < 4; ++round) {
      const uint64_t next = left ^ (mix64(key_ ^ mix64(round ^ (right << 8))) & mask);
      left = right;
      right = next;
    }
    x = (left << half_bits_) | right;
  } while (x >= n_);
  return x;
}

std::vector<std::string> expand_shard_paths(const std::vector<std::string>& paths) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  for (const auto& p : paths) {
    if (fs::is_directory(p)) {
      std::vector<std::string> inside;
      for (const auto& e : fs::directory_iterator(p)) {
        if (e.path().extension() == ".bin") inside.push_back(e.path().string());
      }
      if (inside.empty()) input_error("{}: the directory holds no .bin shards", p);
      std::sort(inside.begin(), inside.end());
      files.insert(files.end(), inside.begin(), inside.end());
    } else {
      files.push_back(p);
    }
  }
  return files;
}

TokenDataset::TokenDataset(const std::vector<std::string>& paths, int64_t vocab_size,
                           int64_t seq_len, uint64_t seed, Order order)
    : seq_len_(seq_len), seed_(seed), shuffle_(order == Order::kShuffled) {
  for (const auto& f : expand_shard_paths(paths)) {
    shards_.emplace_back(f);
    shards_.back().check_vocab(vocab_size);
    starts_.push_back(total_);
    total_ += shards_.back().size();
  }
  windows_ = total_ > 0 ? (total_ - 1) / seq_len : 0;
  if (windows_ == 0) {
    input_error("{}: {} tokens in all, fewer than data.seq_len + 1 = {}", fmt::join(paths, ", "),
                total_, seq_len + 1);
  }
}

void TokenDataset::read(int64_t begin, std::span<int32_t> out) const {
  // The shard holding `begin`, then on across shard boundaries.
  size_t s = static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), begin) -
                                 starts_.begin() - 1);
  size_t done = 0;
  while (done < out.size()) {
    const int64_t offset = begin + static_cast<int64_t>(done) - starts_[s];
    const auto n = static_cast<size_t>(
        std::min<int64_t>(shards_[s].size() - offset, static_cast<int64_t>(out.size() - done)));
    shards_[s].read(offset, out.subspan(done, n));
    done += n;
    ++s;
  }
}

void TokenDataset::sequence(int64_t index, std::span<int32_t> out) const {
  TMT_CHECK(index >= 0 && static_cast<int64_t>(out.size()) == seq_len_ + 1,
            "sequence {} into {} tokens", index, out.size());
  const auto n = static_cast<uint64_t>(windows_);
  const auto i = static_cast<uint64_t>(index);
  uint64_t window = i % n;
  if (shuffle_) window = IndexPermutation(n, mix64(seed_ ^ mix64(i / n))).apply(window);
  read(static_cast<int64_t>(window) * seq_len_, out);
}

void TokenDataset::check_unchanged() const {
  for (const Shard& s : shards_) s.check_unchanged();
}

std::string TokenDataset::describe() const {
  return fmt::format("{} shard(s), {} tokens, {} windows of {}+1 tokens{}", shards_.size(), total_,
                     windows_, seq_len_, shuffle_ ? ", shuffled per epoch" : "");
}

}  // namespace tmt
