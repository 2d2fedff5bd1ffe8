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

namespace {

enum class Command : uint8_t { kTrain, kEval };

// Every rank loads and checks the recipe and opens the data; they agree that it is good. train
// writes run.dir/recipe.resolved.yaml; eval needs a validation split.
int set_up(Command command, const std::string& recipe_path,
           const std::vector<std::string>& overrides, Recipe& recipe, DataSources& data) {
  return agree_on_setup([&] {
    recipe = load_recipe(recipe_path, overrides);
    resolve_layout(recipe, process_world());
    refuse_unbuilt_features(recipe);
    data = open_data(recipe);
    if (command == Command::kEval && (!data.val || data.val->count() == 0)) {
      input_error(
          "{}: data: eval reads a validation split of token shards (data.source: shards, with "
          "data.val_paths or a val directory beside data.paths)",
          recipe.origin_of("data"));
    }
    if (command == Command::kTrain && process_rank() == 0) {
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
}

}  // namespace

int run_train(const TrainOptions& options) {
  Recipe recipe;
  DataSources data;
  if (!options.init_from.empty() && !options.resume.empty())
    input_error(
        "--init-from and --resume: give one (--resume continues a run, --init-from starts one)");
  if (const int status = set_up(Command::kTrain, options.recipe, options.overrides, recipe, data);
      status != 0)
    return status;

  log_info("tramontane {}: {} on {} rank(s) (tp {} x dp {} x pp {}, ep {}), run directory {}",
           TMT_VERSION, recipe.source, process_world(), recipe.parallel.tp, recipe.parallel.dp,
           recipe.parallel.pp, recipe.parallel.ep, recipe.run.dir);
  StartFrom from{options.resume, LoadWhat::kTrainingState};
  const bool may_resume = !options.no_resume && recipe.checkpoint.resume;
  if (from.checkpoint.empty() && may_resume) from.checkpoint = latest_checkpoint(recipe.run.dir);
  if (!options.init_from.empty()) {
    if (from.checkpoint.empty()) {
      from = {options.init_from, LoadWhat::kWeights};
    } else {
      log_info("run.dir has checkpoints of its own: resuming {} (--init-from {} starts a run only)",
               from.checkpoint, options.init_from);
    }
  }
  return train(recipe, data, from);
}

int run_eval(const EvalOptions& options) {
  Recipe recipe;
  DataSources data;
  if (const int status = set_up(Command::kEval, options.recipe, options.overrides, recipe, data);
      status != 0)
    return status;
  std::string checkpoint = options.checkpoint;
  if (checkpoint.empty()) checkpoint = latest_checkpoint(recipe.run.dir);
  return evaluate(recipe, data, checkpoint);
}

}  // namespace tmt
