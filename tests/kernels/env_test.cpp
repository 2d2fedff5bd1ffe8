// env_choice (kernels/base/env.h): a named value, or nothing when the variable is unset or empty.
#include "kernels/base/env.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace tmt {
namespace {

enum class Path { kA, kB };

std::optional<Path> read() {
  return env_choice<Path>("TMT_ENV_TEST", {{"a", Path::kA}, {"b", Path::kB}});
}

TEST(EnvChoice, NamedValueUnsetAndEmpty) {
  unsetenv("TMT_ENV_TEST");
  EXPECT_FALSE(read().has_value());
  setenv("TMT_ENV_TEST", "", 1);
  EXPECT_FALSE(read().has_value());
  setenv("TMT_ENV_TEST", "b", 1);
  EXPECT_EQ(read(), Path::kB);
  setenv("TMT_ENV_TEST", "a", 1);
  EXPECT_EQ(read(), Path::kA);
}

TEST(EnvChoiceDeathTest, AnyOtherValueNamesTheChoices) {
  setenv("TMT_ENV_TEST", "c", 1);
  EXPECT_DEATH(read(), "TMT_ENV_TEST=c is not one of a, b");
}

}  // namespace
}  // namespace tmt
