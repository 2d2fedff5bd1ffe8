// `--set key.path=value` flags over the embedded default recipe: one flag per line of the input.
#include "fuzz/fuzz_support.h"
#include "trainer/recipe/embedded.h"
#include "trainer/recipe/recipe.h"

using namespace tmt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string> flags = fuzz::split(fuzz::text_of(data, size), '\n');
  fuzz::expect_input_error([&] {
    Recipe r = parse_recipe(std::string(embedded_default_recipe()),
                            std::string(kEmbeddedRecipeName), flags);
    int64_t world = 0;
    if (!__builtin_mul_overflow(r.parallel.tp, r.parallel.pp, &world)) {
      if (required_world(r) > 0) world = required_world(r);
      resolve_layout(r, world);
    }
  });
  return 0;
}
