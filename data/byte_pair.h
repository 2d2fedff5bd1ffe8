// Byte-level BPE as tiktoken does it: a piece of text (bytes) that is itself a vocabulary entry is
// one token; otherwise its bytes start as one part each and the adjacent pair whose concatenation has
// the lowest rank is merged, the leftmost such pair on ties, until no adjacent pair is a vocabulary
// entry. Each final part is one token, its id its rank.
//
// RankTable maps byte strings to ranks: open addressing over one byte arena, so a lookup of a
// string_view allocates nothing. Pieces up to kShortPiece bytes merge in arrays on the stack with a
// linear scan for the minimum; longer ones (runs of spaces, digits, emoji) with a heap, O(n log n).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tmt {

class RankTable {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  // Entries are added in any order; a byte string added twice keeps its first rank (returns false).
  explicit RankTable(size_t expected_entries);
  bool add(std::string_view bytes, uint32_t rank);
  uint32_t find(std::string_view bytes) const;  // kNone when absent
  size_t size() const { return count_; }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t offset = 0;
    uint32_t length = 0;  // 0 = empty slot (no entry is empty)
    uint32_t rank = kNone;
  };
  std::string arena_;
  std::vector<Slot> slots_;
  uint64_t mask_ = 0;
  size_t count_ = 0;
};

inline constexpr size_t kShortPiece = 128;

// Appends the ranks of `piece`'s tokens to `out`. Every single byte must be in `ranks`.
void byte_pair_encode(const RankTable& ranks, std::string_view piece, std::vector<uint32_t>& out);

}  // namespace tmt
