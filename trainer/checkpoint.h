// Checkpoints: sharded HDF5 files in global index space, written atomically, loadable at any
// layout of the same model.
//
//   run.dir/checkpoints/step-0000100/
//     rank-00003.h5   the blocks rank 3 writes: /param/<name>, /exp_avg/<name>, /exp_avg_sq/<name>
//                     (f32, the block's own shape; attribute "offset": where it sits in the tensor)
//     index.h5        the same paths as HDF5 virtual datasets of the tensors' global shapes,
//                     stitched from the shards (experts by global expert index, TP shards side by
//                     side, pipeline stages by global layer index), so h5py reads any tensor whole
//                     with no tramontane code; attributes: format_version, tramontane_version,
//                     step, adam_steps, skipped_in_a_row, seed, consumed_sequences, recipe (the
//                     resolved YAML), layout and shards (JSON: each shard's file, bytes, CRC-32C)
//   run.dir/checkpoints/latest   one line: the newest complete checkpoint's directory name
//
// Each block of a tensor is written once: of the ranks that hold the same block (data-parallel
// replicas, and tensor-parallel ones for norms and routers), the one at replica index hash(name)
// mod replicas writes it, so the writing spreads over the data-parallel ranks. The fp32 values are
// the master weights; exp_avg and exp_avg_sq are AdamW's moments, gathered whole from zero1
// shards first.
//
// Atomic: everything is written under step-NNNNNNN.partial/ and fsynced; rank 0 then writes the
// index, renames the directory and only then replaces `latest` (write, fsync, rename). A run
// killed at any moment leaves the previous checkpoint as latest; leftover .partial directories are
// removed by the next save. (For crash tests, TMT_FAULT_KILL_IN_SAVE=N makes rank 0 kill itself
// in the save of step N, after the shards and before the index.)
//
// Loading reads, for each of this rank's blocks at its own layout, the hyperslab of the global
// tensor through the index, so tp, pp, ep, etp, dp and zero1 may all differ from the writer's.
// Before anything is read every shard's size and checksum are verified (HDF5 would silently read
// the fill value from a missing shard).
#pragma once

#include <cstdint>
#include <string>

#include "trainer/model/params.h"
#include "trainer/optimizer.h"
#include "trainer/parallel_env.h"
#include "trainer/recipe.h"

namespace tmt {

inline constexpr int64_t kCheckpointFormat = 1;

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
