// Checkpoints: save, find, check, load and show them. The format (files, datasets, attributes,
// atomicity, resharding) is described in format.h.
#pragma once

#include <cstdint>
#include <string>

#include "parallel/groups.h"
#include "trainer/model/params.h"
#include "trainer/optim/optimizer.h"
#include "trainer/recipe/recipe.h"

namespace tmt {

// What a checkpoint restores besides the tensors. The data position and the learning-rate
// schedule are functions of `step`.
struct TrainingState {
  int64_t step = 0;        // optimizer steps done
  int64_t adam_steps = 0;  // AdamW's bias-correction count (skipped steps do not count)
  int64_t skipped_in_a_row = 0;
};

// Collective: writes run.dir/checkpoints/step-NNNNNNN, points `latest` at it and deletes all but
// the newest checkpoint.keep. Returns the directory written.
std::string save_checkpoint(const Recipe& r, ParallelEnv& env, const ParamStore& params,
                            Optimizer& optimizer, const TrainingState& state);

// The directory `latest` in run_dir/checkpoints names, or "" when there is none.
std::string latest_checkpoint(const std::string& run_dir);

// Not collective: checks what this rank will read (the index, the recipe's model against the
// checkpoint's, its blocks' tensors and shapes, and the shards i with i % world == rank: present,
// complete, checksum). Throws InputError naming the file and what is wrong.
void check_checkpoint(const std::string& dir, const Recipe& r, const ParamStore& params, int rank,
                      int world);

// Collective: reads this rank's blocks (parameters and moments) from a checked checkpoint.
TrainingState load_checkpoint(const std::string& dir, ParamStore& params, Optimizer& optimizer);

// `tramontane inspect`: prints the step, the layout it was written at, every tensor (name, global
// shape, dtype, CRC-32C of its bytes) and the recipe. Throws InputError for a broken checkpoint.
void print_checkpoint(const std::string& dir, bool tensors_only);

}  // namespace tmt
