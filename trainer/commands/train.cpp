// `tramontane train`: every rank loads and checks the recipe, they agree that it is good, then
// train.
#include <filesystem>
#include <fstream>

#include "kernels/base/check.h"
#include "kernels/base/device.h"
#include "kernels/base/log.h"
#include "parallel/mpi_env.h"
#include "trainer/commands/commands.h"
#include "trainer/recipe/recipe.h"
#include "trainer/trainer.h"

namespace tmt {
namespace {

// Keys the recipe format already has (they are part of its contract) but this build cannot honour
// yet: refusing them is better than silently training something else than the recipe says.
void refuse_unbuilt_features(const Recipe& r) {
  auto refuse = [&](const std::string& key, const std::string& why) {
    input_error("{}: {}: {}", r.origin_of(key), key, why);
  };
  if (r.train.device == Device::kCuda) {
    std::string why;
    if (usable_gpus(&why) == 0) refuse("train.device", "cuda, but no GPU is usable here: " + why);
  }
}

}  // namespace

int run_train(const TrainOptions& options) {
  Recipe recipe;
  DataSources data;
  const int status = agree_on_setup([&] {
    recipe = load_recipe(options.recipe, options.overrides);
    resolve_layout(recipe, process_world());
    refuse_unbuilt_features(recipe);
    data = open_data(recipe);
    if (process_rank() == 0) {
      std::error_code ec;
      std::filesystem::create_directories(recipe.run.dir, ec);
      const auto path = std::filesystem::path(recipe.run.dir) / "recipe.resolved.yaml";
      std::ofstream out(path);
      if (ec || !(out << to_yaml(recipe))) {
        input_error("{}: run.dir: cannot write {}{}", recipe.origin_of("run.dir"), path.string(),
                    ec ? ": " + ec.message() : "");
      }
    }
  });
  if (status != 0) return status;

  log_info("tramontane {}: {} on {} rank(s) (tp {} x dp {} x pp {}, ep {}), run directory {}",
           TMT_VERSION, recipe.source, process_world(), recipe.parallel.tp, recipe.parallel.dp,
           recipe.parallel.pp, recipe.parallel.ep, recipe.run.dir);
  std::string resume_from = options.resume;
  if (resume_from.empty() && !options.no_resume && recipe.checkpoint.resume)
    resume_from = latest_checkpoint(recipe.run.dir);
  return train(recipe, data, resume_from);
}

}  // namespace tmt
