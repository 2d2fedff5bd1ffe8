// Topology: where each rank sits in the dense and the expert process grids.
//
// Dense layers use world = TP × CP × DP × PP, TP varying fastest and PP slowest (Megatron's
// tp-cp-dp-pp order):
//     rank = tp + TP · (cp + CP · (dp + DP · pp))
// Expert layers fold the same ranks of one pipeline stage differently (Megatron's "parallel
// folding"): the TP·CP·DP ranks of a stage are re-read as ETP × EP × EDP, ETP fastest:
//     rank % (TP·CP·DP) = etp + ETP · (ep + EP · edp),   with the same pp = rank / (TP·CP·DP)
// so expert groups never cross pipeline stages, and EP can span ranks that are TP, CP or DP peers
// in the dense grid (the experts see tokens, not sequences). A group (TP, CP, DP, PP, ETP, EP,
// EDP) is the set of ranks that differ only in that coordinate; DP×CP, the ranks holding the
// same dense parameters and different tokens, differ in both cp and dp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tmt {

struct Layout {
  int64_t tp = 1, dp = 1, pp = 1;    // dense grid
  int64_t etp = 1, ep = 1, edp = 1;  // expert grid within a stage: etp · ep · edp == tp · cp · dp
  int64_t cp = 1;                    // dense grid: context parallelism, between tp and dp

  int64_t world() const { return tp * cp * dp * pp; }
  int64_t stage_size() const { return tp * cp * dp; }
};

struct RankCoords {
  int64_t rank = 0;
  int64_t tp = 0, dp = 0, pp = 0;
  int64_t etp = 0, ep = 0, edp = 0;
  int64_t cp = 0;
};

// kExperts: the etp · ep ranks that share out the experts of one expert-data-parallel replica
// (ordered etp + ETP · ep); kDpCp: the cp · dp ranks of one tp coordinate and stage (ordered
// cp + CP · dp), the dense parameters' gradient replicas.
enum class GroupKind { kTp, kDp, kPp, kEtp, kEp, kEdp, kExperts, kCp, kDpCp };

// Checks the layout is self-consistent; TMT_CHECK (the recipe layer reports user errors earlier).
void check_layout(const Layout& layout);

RankCoords coords_of(const Layout& layout, int64_t rank);
int64_t dense_rank(const Layout& layout, int64_t tp, int64_t dp, int64_t pp, int64_t cp = 0);
int64_t expert_rank(const Layout& layout, int64_t etp, int64_t ep, int64_t edp, int64_t pp);

// The ranks of `rank`'s group of this kind, ordered by their coordinate in it (index i has
// coordinate i).
std::vector<int64_t> group_ranks(const Layout& layout, int64_t rank, GroupKind kind);

std::string group_name(GroupKind kind);  // "tp", "dp", ...

}  // namespace tmt
