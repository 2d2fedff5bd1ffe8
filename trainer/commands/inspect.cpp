// `tramontane inspect CKPT`: what a checkpoint holds, after verifying every shard.
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/commands/commands.h"

namespace tmt {

int run_inspect(const InspectOptions& options) {
  print_checkpoint(options.checkpoint, options.tensors_only);
  return 0;
}

}  // namespace tmt
