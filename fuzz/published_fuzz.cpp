// The published configs (trainer/interop/published.h): the input's first byte chooses the file
// (even: a Hugging Face config.json, odd: Mistral's params.json), the rest is its content. A config
// that reads goes on as `tramontane import` takes it before any tensor: into the default recipe,
// written and read back as the imported recipe.yaml, its layout resolved, its tensors listed.
#include "fuzz/fuzz_support.h"
#include "trainer/checkpoint/format.h"
#include "trainer/interop/published.h"

using namespace tmt;
namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const fs::path dir = fuzz::scratch_dir() / "model";
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  const char* name = data[0] % 2 == 0 ? "model/config.json" : "model/params.json";
  fuzz::write_file(name, fuzz::text_of(data + 1, size - 1));
  fuzz::expect_input_error([&] {
    const PublishedConfig cfg = read_published_config(dir);
    Recipe base = load_recipe("", {});
    base.model = cfg.model;
    base.parallel = ParallelConfig{};
    base.data.seq_len = std::min(base.data.seq_len, cfg.model.max_seq_len);
    Recipe r = parse_recipe(to_yaml(base, YamlKeys::kDerivedAsNull), "recipe.yaml", {});
    (void)ckpt::shape_keys(r.model);
    resolve_layout(r, required_world(r) > 0 ? required_world(r) : r.parallel.tp * r.parallel.pp);
    (void)tensor_mappings(cfg.model, cfg.format);
  });
  return 0;
}
