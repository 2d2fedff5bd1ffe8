#include "parallel/topology.h"

#include "kernels/base/check.h"

namespace tmt {

void check_layout(const Layout& l) {
  TMT_CHECK(
      l.tp >= 1 && l.cp >= 1 && l.dp >= 1 && l.pp >= 1 && l.etp >= 1 && l.ep >= 1 && l.edp >= 1,
      "layout sizes must be positive");
  TMT_CHECK(l.etp * l.ep * l.edp == l.stage_size(),
            "expert grid {}x{}x{} does not fold the {}x{}x{} dense grid", l.etp, l.ep, l.edp, l.tp,
            l.cp, l.dp);
}

RankCoords coords_of(const Layout& l, int64_t rank) {
  TMT_CHECK(0 <= rank && rank < l.world(), "rank {} outside world {}", rank, l.world());
  RankCoords c;
  c.rank = rank;
  const int64_t local = rank % l.stage_size();
  c.pp = rank / l.stage_size();
  c.tp = local % l.tp;
  c.cp = (local / l.tp) % l.cp;
  c.dp = local / (l.tp * l.cp);
  c.etp = local % l.etp;
  c.ep = (local / l.etp) % l.ep;
  c.edp = local / (l.etp * l.ep);
  return c;
}

int64_t dense_rank(const Layout& l, int64_t tp, int64_t dp, int64_t pp, int64_t cp) {
  return tp + l.tp * (cp + l.cp * (dp + l.dp * pp));
}

int64_t expert_rank(const Layout& l, int64_t etp, int64_t ep, int64_t edp, int64_t pp) {
  return etp + l.etp * (ep + l.ep * edp) + l.stage_size() * pp;
}

std::vector<int64_t> group_ranks(const Layout& l, int64_t rank, GroupKind kind) {
  const RankCoords c = coords_of(l, rank);
  std::vector<int64_t> ranks;
  switch (kind) {
    case GroupKind::kTp:
      for (int64_t i = 0; i < l.tp; ++i) ranks.push_back(dense_rank(l, i, c.dp, c.pp, c.cp));
      break;
    case GroupKind::kDp:
      for (int64_t i = 0; i < l.dp; ++i) ranks.push_back(dense_rank(l, c.tp, i, c.pp, c.cp));
      break;
    case GroupKind::kPp:
      for (int64_t i = 0; i < l.pp; ++i) ranks.push_back(dense_rank(l, c.tp, c.dp, i, c.cp));
      break;
    case GroupKind::kCp:
      for (int64_t i = 0; i < l.cp; ++i) ranks.push_back(dense_rank(l, c.tp, c.dp, c.pp, i));
      break;
    case GroupKind::kDpCp:
      for (int64_t d = 0; d < l.dp; ++d) {
        for (int64_t i = 0; i < l.cp; ++i) ranks.push_back(dense_rank(l, c.tp, d, c.pp, i));
      }
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
    case GroupKind::kCp:
      return "cp";
    case GroupKind::kDpCp:
      return "dp*cp";
  }
  return "?";
}

}  // namespace tmt
