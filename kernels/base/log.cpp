#include "kernels/base/log.h"

#include <cstdio>

#include "kernels/base/check.h"

namespace tmt {

void log_line(bool all_ranks, std::string_view text) {
  if (all_ranks) {
    if (process_world() > 1) {
      fmt::print(stderr, "[rank {}/{}] {}\n", process_rank(), process_world(), text);
    } else {
      fmt::print(stderr, "{}\n", text);
    }
    return;
  }
  if (process_rank() != 0) return;
  fmt::print("{}\n", text);
  std::fflush(stdout);
}

}  // namespace tmt
