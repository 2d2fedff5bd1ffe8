#include "parallel/groups.h"

#include <algorithm>

#include "kernels/base/check.h"

namespace tmt {
namespace {

std::unique_ptr<Communicator> group(const Communicator& world, const Layout& l, GroupKind kind,
                                    const char* name) {
  const auto members = group_ranks(l, world.rank(), kind);
  const auto position = std::find(members.begin(), members.end(), world.rank()) - members.begin();
  auto comm = world.split(static_cast<int>(members.front()), static_cast<int>(position));
  comm->set_name(name);
  return comm;
}

}  // namespace

ParallelEnv ParallelEnv::create(const Communicator& world, const Layout& layout) {
  ParallelEnv env;
  env.layout = layout;
  check_layout(env.layout);
  TMT_CHECK(env.layout.world() == world.size(), "layout of {} ranks on a world of {}",
            env.layout.world(), world.size());
  env.coords = coords_of(env.layout, world.rank());
  env.world = world.split(0, world.rank());
  env.tp = group(world, env.layout, GroupKind::kTp, "tp");
  env.dp = group(world, env.layout, GroupKind::kDp, "dp");
  env.pp = group(world, env.layout, GroupKind::kPp, "pp");
  env.etp = group(world, env.layout, GroupKind::kEtp, "etp");
  env.ep = group(world, env.layout, GroupKind::kEp, "ep");
  env.edp = group(world, env.layout, GroupKind::kEdp, "edp");
  env.experts = group(world, env.layout, GroupKind::kExperts, "experts");
  env.cp = group(world, env.layout, GroupKind::kCp, "cp");
  env.dp_cp = group(world, env.layout, GroupKind::kDpCp, "dp_cp");
  return env;
}

}  // namespace tmt
