// `tramontane prepare`: text files into token shards (data/prepare.h).
#include "data/prepare.h"

#include <fmt/format.h>

#include "trainer/commands/commands.h"

namespace tmt {

int run_prepare(const PrepareOptions& options) {
  const PrepareSummary s = prepare_shards(options);
  fmt::print("{}\n", s.describe());
  return 0;
}

}  // namespace tmt
