// `tramontane train`: every rank loads and checks the recipe, they agree that it is good, then
// train.
#include <filesystem>
#include <fstream>

#include "kernels/base/check.h"
#include "kernels/base/log.h"
#include "parallel/mpi_env.h"
#include "trainer/commands.h"
#include "trainer/recipe.h"

namespace tmt {

int run_train(const TrainOptions& options) {
  Recipe recipe;
  const int status = agree_on_setup([&] {
    recipe = load_recipe(options.recipe, options.overrides);
    resolve_layout(recipe, process_world());
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

  log_info("tramontane {}: recipe {} resolved for {} rank(s) (tp {} x dp {} x pp {}, ep {})",
           TMT_VERSION, recipe.source, process_world(), recipe.parallel.tp, recipe.parallel.dp,
           recipe.parallel.pp, recipe.parallel.ep);
  log_info("the training loop is not built yet: recipe validated, run directory {} prepared",
           recipe.run.dir);
  return 0;
}

}  // namespace tmt
