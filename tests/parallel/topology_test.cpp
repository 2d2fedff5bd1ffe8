// Topology: the dense and expert grids are bijections onto the ranks, groups have the right
// members, and the worked examples of DESIGN.md §4 come out as documented.
#include "parallel/topology.h"

#include <gtest/gtest.h>

#include <set>

namespace tmt {
namespace {

std::vector<Layout> layouts() {
  return {
      {1, 1, 1, 1, 1, 1}, {2, 1, 1, 2, 1, 1}, {1, 2, 2, 1, 2, 1},  {2, 2, 2, 1, 2, 2},
      {2, 2, 2, 1, 4, 1}, {2, 2, 2, 2, 2, 1}, {1, 16, 4, 1, 8, 2}, {4, 3, 2, 2, 3, 2},
  };
}

TEST(Topology, CoordinatesAreABijection) {
  for (const Layout& l : layouts()) {
    check_layout(l);
    std::set<std::tuple<int64_t, int64_t, int64_t>> dense, expert;
    for (int64_t r = 0; r < l.world(); ++r) {
      const RankCoords c = coords_of(l, r);
      EXPECT_EQ(dense_rank(l, c.tp, c.dp, c.pp), r);
      EXPECT_EQ(expert_rank(l, c.etp, c.ep, c.edp, c.pp), r);
      EXPECT_LT(c.etp, l.etp);
      EXPECT_LT(c.ep, l.ep);
      EXPECT_LT(c.edp, l.edp);
      dense.insert({c.tp, c.dp, c.pp});
      expert.insert({c.etp + l.etp * c.ep, c.edp, c.pp});
    }
    EXPECT_EQ(static_cast<int64_t>(dense.size()), l.world());
    EXPECT_EQ(static_cast<int64_t>(expert.size()), l.world());
  }
}

TEST(Topology, TpFastestPpSlowest) {
  const Layout l{2, 2, 2, 1, 4, 1};
  // ranks 0..7: tp = r % 2, dp = (r / 2) % 2, pp = r / 4
  const RankCoords c5 = coords_of(l, 5);
  EXPECT_EQ(c5.tp, 1);
  EXPECT_EQ(c5.dp, 0);
  EXPECT_EQ(c5.pp, 1);
  EXPECT_EQ(c5.ep, 1);  // (5 % 4) = 1 -> ep 1 of 4 within stage 1
  EXPECT_EQ(group_ranks(l, 5, GroupKind::kTp), (std::vector<int64_t>{4, 5}));
  EXPECT_EQ(group_ranks(l, 5, GroupKind::kDp), (std::vector<int64_t>{5, 7}));
  EXPECT_EQ(group_ranks(l, 5, GroupKind::kPp), (std::vector<int64_t>{1, 5}));
  EXPECT_EQ(group_ranks(l, 5, GroupKind::kEp), (std::vector<int64_t>{4, 5, 6, 7}));
  EXPECT_EQ(group_ranks(l, 5, GroupKind::kEdp), (std::vector<int64_t>{5}));
}

TEST(Topology, GroupsPartitionTheWorld) {
  for (const Layout& l : layouts()) {
    for (GroupKind k : {GroupKind::kTp, GroupKind::kDp, GroupKind::kPp, GroupKind::kEtp,
                        GroupKind::kEp, GroupKind::kEdp, GroupKind::kExperts}) {
      std::vector<int> seen(static_cast<size_t>(l.world()), 0);
      for (int64_t r = 0; r < l.world(); ++r) {
        const auto g = group_ranks(l, r, k);
        // r belongs to its own group, and every member sees the same group
        EXPECT_NE(std::find(g.begin(), g.end(), r), g.end());
        for (int64_t m : g) EXPECT_EQ(group_ranks(l, m, k), g) << group_name(k);
        if (g.front() == r) {
          for (int64_t m : g) seen[static_cast<size_t>(m)]++;
        }
      }
      for (int s : seen) EXPECT_EQ(s, 1) << group_name(k);
    }
  }
}

TEST(Topology, ExpertGroupsStayInsideAPipelineStage) {
  const Layout l{1, 16, 4, 1, 8, 2};  // Mixtral 8x7B on 64 GPUs
  for (int64_t r = 0; r < l.world(); ++r) {
    const int64_t stage = coords_of(l, r).pp;
    for (GroupKind k : {GroupKind::kEp, GroupKind::kEdp}) {
      for (int64_t m : group_ranks(l, r, k)) EXPECT_EQ(coords_of(l, m).pp, stage);
    }
  }
  EXPECT_EQ(group_ranks(l, 0, GroupKind::kEp).size(), 8u);
  EXPECT_EQ(group_ranks(l, 0, GroupKind::kEdp), (std::vector<int64_t>{0, 8}));
}

TEST(Topology, ExpertsGroupIsEtpTimesEpInExpertOrder) {
  // tp2 dp4 pp2 with etp2 ep2 edp2: a stage's 8 ranks read as etp + 2 · (ep + 2 · edp)
  const Layout l{2, 4, 2, 2, 2, 2};
  EXPECT_EQ(group_ranks(l, 0, GroupKind::kExperts), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(group_ranks(l, 13, GroupKind::kExperts), (std::vector<int64_t>{12, 13, 14, 15}));
  for (int64_t r = 0; r < l.world(); ++r) {
    const auto g = group_ranks(l, r, GroupKind::kExperts);
    const RankCoords c = coords_of(l, r);
    // position in the group = etp + ETP · ep
    EXPECT_EQ(g[static_cast<size_t>(c.etp + l.etp * c.ep)], r);
  }
}

}  // namespace
}  // namespace tmt
