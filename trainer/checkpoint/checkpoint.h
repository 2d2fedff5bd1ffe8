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
// checkpoint.keep checkpoints (the new one and the newest others). Returns the directory written.
// When a write fails on any rank, every rank throws the same StorageError ("checkpoint
// step-NNNNNNN not written: <path>: <reason>") after the partial files are removed and with
// `latest` and the older checkpoints as they were (format.h).
std::string save_checkpoint(const Recipe& r, ParallelEnv& env, const ParamStore& params,
                            Optimizer& optimizer, const TrainingState& state);

// The directory `latest` in run_dir/checkpoints names, or "" when there is none.
std::string latest_checkpoint(const std::string& run_dir);

// What a load takes from a checkpoint: everything a resumed run needs, or the weights alone (the
// optimizer stays as it is: fresh; train --init-from, eval). A weights-only checkpoint (format.h)
// loads as kTrainingState with zero moments.
enum class LoadWhat : uint8_t { kTrainingState, kWeights };

// Not collective: checks what this rank will read (the index, the recipe's model against the
// checkpoint's, its blocks' tensors and shapes, and the shards i with i % world == rank: present,
// complete, checksum). Throws InputError naming the file and what is wrong.
void check_checkpoint(const std::string& dir, const Recipe& r, const ParamStore& params, int rank,
                      int world, LoadWhat what = LoadWhat::kTrainingState);

// Collective: reads this rank's blocks (parameters, and the moments unless `what` is kWeights or
// the checkpoint has none) from a checked checkpoint; returns the state the checkpoint records.
TrainingState load_checkpoint(const std::string& dir, ParamStore& params, Optimizer& optimizer,
                              LoadWhat what = LoadWhat::kTrainingState);

// `tramontane inspect`: prints the step, the layout it was written at, every tensor (name, global
// shape, dtype, CRC-32C of its bytes) and the recipe. Throws InputError for a broken checkpoint.
void print_checkpoint(const std::string& dir, bool tensors_only);

}  // namespace tmt
