#include "parallel/topology.h"

#include "kernels/base/check.h"

namespace tmt {

void check_layout(const Layout& l) {
  TMT_CHECK(l.tp >= 1 && l.dp >= 1 && l.pp >= 1 && l.etp >= 1 && l.ep >= 1 && l.edp >= 1,
            "layout sizes must be positive");
  TMT_CHECK(l.etp * l.ep * l.edp == l.tp * l.dp,
            "expert grid {}x{}x{} does not fold the {}x{} dense grid", l.etp, l.ep, l.edp, l.tp,
            l.dp);
}

RankCoords coords_of(const Layout& l, int64_t rank) {
  TMT_CHECK(0 <= rank && rank < l.world(), "rank {} outside world {}", rank, l.world());
  RankCoords c;
  c.rank = rank;
  const int64_t stage_size = l.tp * l.dp;
  const int64_t local = rank % stage_size;
  c.pp = rank / stage_size;
  c.tp = local % l.tp;
  c.dp = local / l.tp;
  c.etp = local % l.etp;
  c.ep = (local / l.etp) % l.ep;
  c.edp = local / (l.etp * l.ep);
  return c;
}

int64_t dense_rank(const Layout& l, int64_t tp, int64_t dp, int64_t pp) {
  return tp + l.tp * (dp + l.dp * pp);
}

int64_t expert_rank(const Layout& l, int64_t etp, int64_t ep, int64_t edp, int64_t pp) {
  return etp + l.etp * (ep + l.ep * edp) + l.tp * l.dp * pp;
}

std::vector<int64_t> group_ranks(const Layout& l, int64_t rank, GroupKind kind) {
  const RankCoords c = coords_of(l, rank);
  std::vector<int64_t> ranks;
  switch (kind) {
    case GroupKind::kTp:
      for (int64_t i = 0; i < l.tp; ++i) ranks.push_back(dense_rank(l, i, c.dp, c.pp));
      break;
    case GroupKind::kDp:
      for (int64_t i = 0; i < l.dp; ++i) ranks.push_back(dense_rank(l, c.tp, i, c.pp));
      break;
    case GroupKind::kPp:
      for (int64_t i = 0; i < l.pp; ++i) ranks.push_back(dense_rank(l, c.tp, c.dp, i));
      break;
    case GroupKind::kEtp:
      for (int64_t i = 0; i < l.etp; ++i) ranks.push_back(expert_rank(l, i, c.ep, c.edp, c.pp));
      break;
    case GroupKind::kEp:
      for (int64_t i = 0; i < l.ep; ++i) ranks.push_back(expert_rank(l, c.etp, i, c.edp, c.pp));
      break;
    case GroupKind::kEdp:
      for (int64_t i = 0; i < l.edp; ++i) ranks.push_back(expert_rank(l, c.etp, c.ep, i, c.pp));
      break;
    case GroupKind::kExperts:
      for (int64_t e = 0; e < l.ep; ++e) {
        for (int64_t t = 0; t < l.etp; ++t) ranks.push_back(expert_rank(l, t, e, c.edp, c.pp));
      }
      break;
  }
  return ranks;
}

std::string group_name(GroupKind kind) {
  switch (kind) {
    case GroupKind::kTp:
      return "tp";
    case GroupKind::kDp:
      return "dp";
    case GroupKind::kPp:
      return "pp";
    case GroupKind::kEtp:
      return "etp";
    case GroupKind::kEp:
      return "ep";
    case GroupKind::kEdp:
      return "edp";
    case GroupKind::kExperts:
      return "etp*ep";
  }
  return "?";
}

}  // namespace tmt
