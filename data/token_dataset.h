// TokenDataset: sequences cut from token shards.
//
// The shards (files, or directories of *.bin files taken in sorted order) are read as one stream of
// `total` tokens. Window w covers tokens [w·S, w·S + S] (S + 1 tokens, so neighbours share one),
// and there are N = (total - 1) / S windows. Training sequence i is window perm_e(i mod N) where e
// = i / N is the epoch and perm_e a pseudo-random permutation of [0, N) drawn from (seed, e): every
// window once per epoch, in a new order each epoch, computed without storing N entries (a Feistel
// network with cycle walking). Validation uses the identity order.
#pragma once

#include <string>
#include <vector>

#include "data/sequence_source.h"
#include "data/shard.h"

namespace tmt {

// A bijection of [0, n) that depends on `key`; apply(i) is O(1) in memory.
class IndexPermutation {
 public:
  IndexPermutation(uint64_t n, uint64_t key);
  uint64_t apply(uint64_t i) const;

 private:
  uint64_t n_;
  uint64_t key_;
  int half_bits_;
};

class TokenDataset final : public SequenceSource {
 public:
  // Opens and checks every shard (tokens < vocab_size). Throws InputError naming the path at fault,
  // or the paths when they hold fewer than seq_len + 1 tokens.
  // kShuffled: the windows in a new order each epoch, from seed (training); kInOrder: in file
  // order (validation).
  enum class Order : uint8_t { kShuffled, kInOrder };
  TokenDataset(const std::vector<std::string>& paths, int64_t vocab_size, int64_t seq_len,
               uint64_t seed, Order order);

  int64_t seq_len() const override { return seq_len_; }
  void sequence(int64_t index, std::span<int32_t> out) const override;
  std::string describe() const override;
  void check_unchanged() const override;  // every shard's (Shard::check_unchanged)
  int64_t tokens() const { return total_; }
  int64_t windows() const { return windows_; }
  int64_t count() const override { return windows_; }

 private:
  void read(int64_t begin,
            std::span<int32_t> out) const;  // tokens [begin, begin + n) of the stream

  std::vector<Shard> shards_;
  std::vector<int64_t> starts_;  // first stream index of each shard
  int64_t total_ = 0;
  int64_t seq_len_ = 0;
  int64_t windows_ = 0;
  uint64_t seed_ = 0;
  bool shuffle_ = true;
};

// The shard files a list of paths names: files as given, directories expanded to their *.bin files.
std::vector<std::string> expand_shard_paths(const std::vector<std::string>& paths);

}  // namespace tmt
