// The one-rank-equivalence harness of the parallel tests: the same recipe trained on one rank and
// at a parallel layout must give the same run — the loss of every step, the validation loss and
// the final parameters (gathered from their shards into global tensors). Used on the CPU by
// tests/parallel/layout_equivalence_test and on one shared GPU by tests/trainer/cuda/layouts_test.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "parallel/comm.h"
#include "trainer/model/params.h"
#include "trainer/recipe/recipe.h"

namespace tmt::test {

struct TrainRun {
  std::vector<double> losses;
  std::map<std::string, std::vector<double>> params;  // global tensors, by name
  double val = 0;
  double max_load = 0;            // the busiest expert's load over every step and MoE layer
  bool expert_rows_grew = false;  // on any rank (trainer/model/expert_rows.h)
};

// Every parameter of `whole` (a one-rank store: its names and global shapes) as a global tensor,
// from each rank's blocks in `local` (host or device). Collective over `world`.
std::map<std::string, std::vector<double>> gather_params(const ParamStore& local,
                                                         const ParamStore& whole,
                                                         Communicator& world);

// Changes a run's initial parameters (this rank's store) before its first step.
using EditParams = std::function<void(ParamStore&)>;

// Trains `recipe` (resolved for world's size) for its train.steps, then validates; the parameters
// are gathered over `world` in the names of `whole` (null: this rank's own store).
TrainRun train_steps(const Recipe& recipe, Communicator& world, const ParamStore* whole,
                     const EditParams& edit = {});

struct Equivalence {
  const char* recipe = nullptr;          // YAML text
  std::vector<std::string> common = {};  // --set overrides for both runs (device, dtype, ...)
  double rtol = 1e-5;                    // every step's loss and the validation loss
  double param_rtol = 1e-5;              // the final parameters, by norm
  EditParams edit = {};                  // applied to both runs' initial parameters (may be empty)
  const char* edit_name = "";            // what it does, for the one-rank runs' cache
};

// Trains e.recipe + e.common on one rank (cached per program for the same non-layout settings)
// and at `layout` (more --set overrides, parallel.* among them) on every rank of MPI_COMM_WORLD,
// and EXPECTs the same run within e.rtol (e.param_rtol for the parameters). Rank 0 prints the
// differences it saw.
// Returns the parallel run.
TrainRun expect_same_run(const Equivalence& e, const std::vector<std::string>& layout);

}  // namespace tmt::test
