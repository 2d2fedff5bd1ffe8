// Switches read from the environment that choose between implementations of an op (TMT_ATTENTION,
// TMT_GROUPED_GEMM, TMT_GROUPED_GEMM_TILE): a named value or nothing, and a fatal error naming the
// variable and its choices for any other value.
#pragma once

#include <cstdlib>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "kernels/base/check.h"

namespace tmt {

// The choice `variable` names, or nullopt when it is unset or empty.
template <class E>
std::optional<E> env_choice(const char* variable,
                            std::initializer_list<std::pair<std::string_view, E>> choices) {
  const char* env = std::getenv(variable);
  const std::string_view value = env == nullptr ? "" : env;
  if (value.empty()) return std::nullopt;
  std::string names;
  for (const auto& [name, choice] : choices) {
    if (value == name) return choice;
    names += (names.empty() ? "" : ", ") + std::string(name);
  }
  TMT_CHECK(false, "{}={} is not one of {} (or unset)", variable, value, names);
  return std::nullopt;
}

}  // namespace tmt
