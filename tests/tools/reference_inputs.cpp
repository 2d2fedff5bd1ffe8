// Writes the inputs of the PyTorch parity fixtures: for each tests/fixtures/reference/*.yaml, the
// model's initial weights (float32, by name), a batch of tokens and targets, and the config, as
// OUT_DIR/<name>.inputs.safetensors. scripts/reference/mixtral_reference.py turns each into
// <name>.expected.safetensors.
//   build/tests/reference_inputs OUT_DIR
#include <filesystem>
#include <nlohmann/json.hpp>

#include "kernels/base/rng.h"
#include "tests/support/reference_fixture.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: reference_inputs OUT_DIR\n");
    return 2;
  }
  namespace fs = std::filesystem;
  fs::create_directories(argv[1]);
  for (const std::string& name : tmt::test::reference_fixture_names()) {
    const tmt::Recipe recipe = tmt::test::reference_recipe(name);
    tmt::Model model(recipe.model,
                     {.micro_batch = recipe.train.micro_batch,
                      .seq_len = recipe.data.seq_len,
                      .seed = recipe.train.seed},
                     tmt::Context{});
    tmt::SafetensorsFile f;
    for (const tmt::Param& p : model.params().all()) f.add(p.spec.name, p.value);
    const int64_t b = recipe.train.micro_batch, s = recipe.data.seq_len;
    tmt::StoredTensor& tokens = f.add("tokens", tmt::DType::kI32, {b, s});
    tmt::StoredTensor& targets = f.add("targets", tmt::DType::kI32, {b, s});
    for (int64_t i = 0; i < b * s; ++i) {
      const auto v =
          static_cast<double>(tmt::random_bits(recipe.train.seed, 99, static_cast<uint64_t>(i)) %
                              static_cast<uint64_t>(recipe.model.vocab_size));
      tmt::store_element(tmt::DType::kI32, tokens.bytes.data(), static_cast<size_t>(i), v);
      // the next token as target; every 7th target ignored (-1) to exercise the ignore path
      const auto w =
          static_cast<double>(tmt::random_bits(recipe.train.seed, 98, static_cast<uint64_t>(i)) %
                              static_cast<uint64_t>(recipe.model.vocab_size));
      tmt::store_element(tmt::DType::kI32, targets.bytes.data(), static_cast<size_t>(i),
                         i % 7 == 3 ? -1.0 : w);
    }
    f.metadata["config"] = tmt::test::reference_config_json(recipe);
    const std::string out = (fs::path(argv[1]) / (name + ".inputs.safetensors")).string();
    f.write(out);
    std::printf("wrote %s\n", out.c_str());
  }
  return 0;
}
