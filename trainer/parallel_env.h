// ParallelEnv: this rank's place in the layout and a communicator for each of its groups.
#pragma once

#include <memory>

#include "parallel/comm.h"
#include "parallel/topology.h"
#include "trainer/recipe.h"

namespace tmt {

struct ParallelEnv {
  Layout layout;
  RankCoords coords;
  std::unique_ptr<Communicator> world, tp, dp, pp, etp, ep, edp;
  std::unique_ptr<Communicator> experts;  // etp x ep: the ranks the expert all-to-all spans

  // Collective over `world`: splits it into the groups of the recipe's (resolved) layout.
  static ParallelEnv create(const Communicator& world, const ParallelConfig& parallel);
};

}  // namespace tmt
