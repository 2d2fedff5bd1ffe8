#include "data/byte_pair.h"

#include <algorithm>
#include <cstring>
#include <functional>

#include "kernels/base/check.h"

namespace tmt {
namespace {

uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ s.size();
  const char* p = s.data();
  size_t n = s.size();
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
  }
  if (n > 0) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * 0x94d049bb133111ebull;
  }
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  return h ^ (h >> 32);
}

// Long pieces: the parts are a linked list over their first byte, and a heap holds (rank, first
// byte) of every mergeable adjacent pair. An entry is current when its part is alive and still has
// that rank (a part's rank is that of a longer byte string after each merge, so a stale entry never
// matches). Popping the smallest (rank, first byte) is tiktoken's leftmost lowest-rank merge.
void merge_long(const RankTable& ranks, std::string_view piece, std::vector<uint32_t>& out) {
  const auto n = static_cast<uint32_t>(piece.size());
  constexpr uint32_t kDead = UINT32_MAX;
  std::vector<uint32_t> next(n + 1), prev(n + 1), rank(n + 1, RankTable::kNone);
  std::vector<uint64_t> heap;
  heap.reserve(n);
  auto rank_of = [&](uint32_t first) {  // of the part at `first` merged with the one after it
    const uint32_t second = next[first];
    if (second >= n) return RankTable::kNone;
    return ranks.find(piece.substr(first, next[second] - first));
  };
  auto push = [&](uint32_t first) {
    if (rank[first] == RankTable::kNone) return;
    heap.push_back((uint64_t{rank[first]} << 32) | first);
    std::push_heap(heap.begin(), heap.end(), std::greater<>());
  };
  for (uint32_t i = 0; i <= n; ++i) {
    next[i] = i + 1;
    prev[i] = i - 1;  // prev[0] is never read
  }
  for (uint32_t i = 0; i + 1 < n; ++i) {
    rank[i] = rank_of(i);
    push(i);
  }
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const uint64_t top = heap.back();
    heap.pop_back();
    const auto first = static_cast<uint32_t>(top & 0xffffffffu);
    if (next[first] == kDead || rank[first] != static_cast<uint32_t>(top >> 32)) continue;
    const uint32_t second = next[first];
    next[first] = next[second];
    if (next[second] <= n) prev[next[second]] = first;
    next[second] = kDead;
    rank[first] = rank_of(first);
    push(first);
    if (first > 0) {
      const uint32_t before = prev[first];
      rank[before] = rank_of(before);
      push(before);
    }
  }
  for (uint32_t i = 0; i < n; i = next[i]) out.push_back(ranks.find(piece.substr(i, next[i] - i)));
}

}  // namespace

RankTable::RankTable(size_t expected_entries) {
  size_t capacity = 16;
  while (capacity < 2 * expected_entries) capacity *= 2;
  slots_.resize(capacity);
  mask_ = capacity - 1;
}

bool RankTable::add(std::string_view bytes, uint32_t rank) {
  TMT_CHECK(!bytes.empty() && rank != kNone, "RankTable: empty entry or rank");
  if ((count_ + 1) * 2 > slots_.size()) {  // grow: rehash every entry into twice the slots
    std::vector<Slot> old(slots_.size() * 2);
    old.swap(slots_);
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.length == 0) continue;
      uint64_t i = s.hash & mask_;
      while (slots_[i].length != 0) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }
  const uint64_t h = hash_bytes(bytes);
  uint64_t i = h & mask_;
  for (; slots_[i].length != 0; i = (i + 1) & mask_) {
    const Slot& s = slots_[i];
    if (s.hash == h && s.length == bytes.size() &&
        std::memcmp(arena_.data() + s.offset, bytes.data(), bytes.size()) == 0) {
      return false;
    }
  }
  TMT_CHECK(arena_.size() + bytes.size() < UINT32_MAX, "RankTable: vocabulary bytes exceed 4 GiB");
  slots_[i] = {h, static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(bytes.size()), rank};
  arena_.append(bytes);
  ++count_;
  return true;
}

uint32_t RankTable::find(std::string_view bytes) const {
  const uint64_t h = hash_bytes(bytes);
  for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
    const Slot& s = slots_[i];
    if (s.length == 0) return kNone;
    if (s.hash == h && s.length == bytes.size() &&
        std::memcmp(arena_.data() + s.offset, bytes.data(), bytes.size()) == 0) {
      return s.rank;
    }
  }
}

void byte_pair_encode(const RankTable& ranks, std::string_view piece, std::vector<uint32_t>& out) {
  if (piece.empty()) return;
  if (const uint32_t whole = ranks.find(piece); whole != RankTable::kNone) {
    out.push_back(whole);
    return;
  }
  if (piece.size() > kShortPiece) {
    merge_long(ranks, piece, out);
    return;
  }
  // tiktoken's arrays: part i starts at first[i]; rank[i] is the rank of parts i and i + 1 merged;
  // the last entry is the end of the piece.
  uint32_t first[kShortPiece + 1];
  uint32_t rank[kShortPiece + 1];
  size_t parts = piece.size() + 1;
  for (size_t i = 0; i < parts; ++i) {
    first[i] = static_cast<uint32_t>(i);
    rank[i] = i + 2 < parts ? ranks.find(piece.substr(i, 2)) : RankTable::kNone;
  }
  auto rank_at = [&](size_t i) {  // parts i and i + 1 merged, given the current arrays
    return i + 2 < parts ? ranks.find(piece.substr(first[i], first[i + 2] - first[i]))
                         : RankTable::kNone;
  };
  for (;;) {
    size_t best = 0;
    uint32_t best_rank = RankTable::kNone;
    for (size_t i = 0; i + 1 < parts; ++i) {
      if (rank[i] < best_rank) {
        best_rank = rank[i];
        best = i;
      }
    }
    if (best_rank == RankTable::kNone) break;
    std::memmove(first + best + 1, first + best + 2, (parts - best - 2) * sizeof(uint32_t));
    std::memmove(rank + best + 1, rank + best + 2, (parts - best - 2) * sizeof(uint32_t));
    --parts;
    rank[best] = rank_at(best);
    if (best > 0) rank[best - 1] = rank_at(best - 1);
  }
  for (size_t i = 0; i + 1 < parts; ++i) {
    out.push_back(ranks.find(piece.substr(first[i], first[i + 1] - first[i])));
  }
}

}  // namespace tmt
