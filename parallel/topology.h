// Topology: where each rank sits in the dense and the expert process grids.
//
// Dense layers use world = TP × DP × PP, TP varying fastest and PP slowest:
//     rank = tp + TP · (dp + DP · pp)
// Expert layers fold the same ranks of one pipeline stage differently (Megatron's "parallel
// folding"): the TP·DP ranks of a stage are re-read as ETP × EP × EDP, ETP fastest:
//     rank % (TP·DP) = etp + ETP · (ep + EP · edp),   with the same pp = rank / (TP·DP)
// so expert groups never cross pipeline stages, and EP can span ranks that are TP or DP peers in
// the dense grid. A group (TP, DP, PP, ETP, EP, EDP) is the set of ranks that differ only in that
// coordinate.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tmt {

struct Layout {
  int64_t tp = 1, dp = 1, pp = 1;    // dense grid
  int64_t etp = 1, ep = 1, edp = 1;  // expert grid within a stage: etp · ep · edp == tp · dp

  int64_t world() const { return tp * dp * pp; }
};

struct RankCoords {
  int64_t rank = 0;
  int64_t tp = 0, dp = 0, pp = 0;
  int64_t etp = 0, ep = 0, edp = 0;
};

// kExperts: the etp · ep ranks that share out the experts of one expert-data-parallel replica
// (ordered etp + ETP · ep).
enum class GroupKind { kTp, kDp, kPp, kEtp, kEp, kEdp, kExperts };

// Checks the layout is self-consistent; TMT_CHECK (the recipe layer reports user errors earlier).
void check_layout(const Layout& layout);

RankCoords coords_of(const Layout& layout, int64_t rank);
int64_t dense_rank(const Layout& layout, int64_t tp, int64_t dp, int64_t pp);
int64_t expert_rank(const Layout& layout, int64_t etp, int64_t ep, int64_t edp, int64_t pp);

// The ranks of `rank`'s group of this kind, ordered by their coordinate in it (index i has
// coordinate i).
std::vector<int64_t> group_ranks(const Layout& layout, int64_t rank, GroupKind kind);

std::string group_name(GroupKind kind);  // "tp", "dp", ...

}  // namespace tmt
