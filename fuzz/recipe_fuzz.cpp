// The recipe reader: YAML text -> Recipe (keys, types, ranges, the rules between keys), then the
// layout resolved for the world sizes it names. A recipe that reads must also write back (to_yaml)
// and read again: that is what run.dir/recipe.resolved.yaml and checkpoints rely on.
#include <cstdio>
#include <cstdlib>

#include "fuzz/fuzz_support.h"
#include "trainer/recipe/recipe.h"

using namespace tmt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::expect_input_error([&] {
    const Recipe r = parse_recipe(std::string(fuzz::text_of(data, size)), "fuzz.yaml", {});
    const std::string yaml = to_yaml(r);
    try {
      parse_recipe(yaml, "recipe.resolved.yaml", {});
    } catch (const InputError& e) {
      std::fprintf(stderr, "a recipe that reads does not read back from to_yaml: %s\n%s\n",
                   e.what(), yaml.c_str());
      std::abort();
    }
    int64_t worlds[2] = {required_world(r), 0};
    if (__builtin_mul_overflow(r.parallel.tp, r.parallel.pp, &worlds[1])) worlds[1] = 0;
    for (const int64_t world : worlds) {
      if (world <= 0) continue;
      fuzz::expect_input_error([&] {
        Recipe resolved = r;
        resolve_layout(resolved, world);
      });
    }
  });
  return 0;
}
