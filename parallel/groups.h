// ParallelEnv: this rank's place in a layout and a communicator for each of its groups.
#pragma once

#include <memory>

#include "parallel/comm.h"
#include "parallel/topology.h"

namespace tmt {

struct ParallelEnv {
  Layout layout;
  RankCoords coords;
  std::unique_ptr<Communicator> world, tp, dp, pp, etp, ep, edp;
  std::unique_ptr<Communicator> experts;  // etp x ep: the ranks the expert all-to-all spans
  std::unique_ptr<Communicator> cp;       // context parallelism
  std::unique_ptr<Communicator> dp_cp;    // dp x cp: the dense gradients' replicas

  // Collective over `world`: splits it into the groups of `layout` (whose world must be
  // world.size()).
  static ParallelEnv create(const Communicator& world, const Layout& layout);
};

}  // namespace tmt
