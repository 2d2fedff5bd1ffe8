// The PyTorch parity fixtures (tests/fixtures/reference/): their recipes and the config the Python
// reference reads.
#pragma once

#include <string>
#include <vector>

#include "trainer/interop/safetensors.h"
#include "trainer/model/model.h"

namespace tmt::test {

std::vector<std::string> reference_fixture_names();  // "micro_moe", ...
Recipe reference_recipe(const std::string& name);
std::string reference_config_json(const Recipe& recipe);

}  // namespace tmt::test
