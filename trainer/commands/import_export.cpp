// `tramontane import` and `tramontane export`: published weights in and out (interop/weights.h).
#include <fmt/format.h>

#include "trainer/commands/commands.h"

namespace tmt {

int run_import(const ImportOptions& options) {
  fmt::print("{}\n", import_weights(options));
  return 0;
}

int run_export(const ExportOptions& options) {
  fmt::print("{}\n", export_weights(options));
  return 0;
}

}  // namespace tmt
