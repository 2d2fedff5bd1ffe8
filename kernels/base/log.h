// Console logging. info() prints on rank 0 only (every rank computes the same thing, so one line is
// enough); warn() prints on every rank with the rank prefix, since a warning may be rank-specific.
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace tmt {

void log_line(bool all_ranks, std::string_view text);

template <class... Args>
void log_info(fmt::format_string<Args...> f, Args&&... args) {
  log_line(false, fmt::format(f, std::forward<Args>(args)...));
}

template <class... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... args) {
  log_line(true, "warning: " + fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace tmt
