// The subcommands of the `tramontane` binary. Each returns the process exit status and throws
// InputError for bad input (main turns it into one `error:` line and exit 2).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/prepare.h"
#include "trainer/interop/weights.h"

namespace tmt {

struct CheckOptions {
  std::string recipe;  // empty = the embedded default
  std::vector<std::string> overrides;
  int64_t world = 0;  // 0 = what the recipe's layout needs
  bool print_world = false;
  bool json = false;      // a machine-readable summary instead of the report
  bool schema = false;    // print every recipe key instead (no recipe is read)
  bool markdown = false;  // with schema: as the README's markdown table
  bool memory = false;    // also each pipeline stage's device memory per rank, by kind
  std::string hw;         // refuse a layout whose fullest rank does not fit this GPU (plan's table)
};
// `tramontane check`: validates a recipe for a world size and prints what it would train.
int run_check(const CheckOptions& options);

struct PlanOptions {
  std::string recipe;  // empty = the embedded default
  std::vector<std::string> overrides;
  int64_t gpus = 0;
  std::string hw;
  int nvlink_domain = 0;  // 0 = the hardware's
  bool json = false;
  bool search = false;  // rank every valid layout for the GPUs instead (trainer/plan/search.h)
  std::string precision = "bf16";  // the GEMMs' format: bf16 | fp8
  bool overlap = false;            // communication hidden behind compute (step_estimate.h)
  int64_t top = 10;     // with search: the fitting layouts shown
};
// `tramontane plan`: memory per rank, communication per group, a step-time estimate on N GPUs.
int run_plan(const PlanOptions& options);

struct TrainOptions {
  std::string recipe;  // empty = the embedded default
  std::vector<std::string> overrides;
  std::string resume;      // a checkpoint directory to start from ("" = latest in run.dir)
  bool no_resume = false;  // start fresh even when run.dir has checkpoints
  // A new run from this checkpoint's weights (fresh optimizer, step 0), unless run.dir already
  // has checkpoints of its own (then those resume, so a requeued job continues).
  std::string init_from;
};

struct EvalOptions {
  std::string recipe;  // empty = the embedded default
  std::vector<std::string> overrides;
  std::string checkpoint;  // "" = latest in run.dir (none: the initial weights)
};

struct InspectOptions {
  std::string checkpoint;
  bool tensors_only = false;
};
// `tramontane inspect CKPT`: what a checkpoint holds.
int run_inspect(const InspectOptions& options);
struct RunsOptions {
  std::string dir;
  bool json = false;
};
// `tramontane runs DIR`: the runs under DIR, their progress, losses and checkpoints (runs.cpp).
int run_runs(const RunsOptions& options);
// `tramontane prepare`: tokenizes text files into train and val token shards.
int run_prepare(const PrepareOptions& options);
// `tramontane train`: trains on the ranks mpirun (or srun) started.
int run_train(const TrainOptions& options);
// `tramontane eval`: the validation loss of a checkpoint, at any layout.
int run_eval(const EvalOptions& options);
// `tramontane import SRC --out RUN_DIR`, `tramontane export CKPT --out HF_DIR` (weights.h).
int run_import(const ImportOptions& options);
int run_export(const ExportOptions& options);

}  // namespace tmt
