// The default recipe (recipes/tiny.yaml), compiled into the binary at build time.
#pragma once

#include <string_view>

namespace tmt {

inline constexpr std::string_view kEmbeddedRecipeName = "<embedded recipes/tiny.yaml>";
std::string_view embedded_default_recipe();

}  // namespace tmt
