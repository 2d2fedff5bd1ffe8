// The checkpoint format: sharded HDF5 files in global index space, written atomically, loadable at
// any layout of the same model. This page is the contract; save.cpp, load.cpp and inspect.cpp
// implement it.
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
// in the save of step N, after the shards and before the index; for the watchdog's,
// TMT_FAULT_STOP_IN_SAVE=N:R makes rank R stop itself (SIGSTOP) there after writing its shard.)
//
// A write that fails (no space, an I/O error, a read-only file system: StorageError) on any rank
// fails the checkpoint on every rank: the ranks agree on the first failure after the shards and
// again after the index, rank 0 publishes only when none failed, and on failure it removes the
// .partial directory, so `latest` and the checkpoints before it stay as they were (the keep-N
// pruning runs only after a checkpoint is published, and never removes the one `latest` names).
// Each shard and the index reserve their bytes (fallocate) before HDF5 writes them, so a full disk
// fails there, cleanly, rather than inside HDF5, whose cache may then be unable to close the file.
// Every rank then sees the same StorageError; checkpoint.on_error says whether training goes on
// (trainer/trainer.h). (For these tests, TMT_FAULT_ENOSPC_IN_SAVE=N makes the last rank's shard
// write fail with ENOSPC in the save of step N, after the file is written.)
//
// Loading reads, for each of this rank's blocks at its own layout, the hyperslab of the global
// tensor through the index, so tp, pp, ep, etp, dp and zero1 may all differ from the writer's.
// Before anything is read every shard's size and checksum are verified (HDF5 would silently read
// the fill value from a missing shard).
//
// Buffers: a parameter that is not trained (ParamSpec::trainable = false; the MoE layers'
// expert bias `layers.<L>.moe.expert_bias` [E], present when model.moe.bias_update_rate > 0) is
// stored like the others under /param alone (f32, replicated, written once, resharded the same
// way) and has no /exp_avg or /exp_avg_sq; it is loaded with the weights, so a resume and
// `train --init-from` continue from the saved bias bit for bit.
//
// Weights only: a checkpoint written by `tramontane import` holds /param alone (index attribute
// weights_only = 1, step 0, no /exp_avg or /exp_avg_sq, shards named part-NNNNN.h5, each a few
// layers). Resuming from it starts AdamW's moments at zero; `train --init-from` treats any
// checkpoint this way (its weights, a fresh optimizer, step 0), and `eval` reads only /param.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "trainer/checkpoint/hdf5.h"
#include "trainer/model/params.h"
#include "trainer/recipe/recipe.h"

namespace tmt::ckpt {

inline constexpr int64_t kFormatVersion = 1;

// The three tensors kept per parameter: the master weights and AdamW's two moments.
inline constexpr const char* kKinds[] = {"param", "exp_avg", "exp_avg_sq"};

std::string step_name(int64_t step);  // "step-0000100"
std::string shard_name(int rank);     // "rank-00003.h5"

// The flat position of a parameter's block within its group (the moments are laid out alike),
// the group that holds it, and its block of a group-sized flat tensor.
int64_t offset_in_group(const Param& p, const ParamGroup& g);
size_t group_of(const Param& p, const ParamStore& params);
Tensor block_of(const Tensor& flat, const Param& p, const ParamGroup& g);

// The model keys that decide the tensors' names and shapes, as (key, value text) pairs: a
// checkpoint loads only into a model whose keys all agree.
std::vector<std::pair<std::string, std::string>> shape_keys(const ModelConfig& m);

// index.h5 of a checkpoint directory, opened after checking that it exists and has our format
// version. Throws InputError naming the file.
h5::Handle open_index(const std::filesystem::path& dir);
// A JSON attribute of the index (layout: an object, shards: an array); InputError when missing,
// malformed or not of `type`.
nlohmann::json read_json_attr(hid_t file, const char* name, const std::filesystem::path& index,
                              nlohmann::json::value_t type);
// A shard the index lists: an entry {file: a name in dir, bytes, crc32c}, the file present, of the
// size and CRC-32C the entry records (InputError naming the index or the shard).
void verify_shard(const std::filesystem::path& dir, const nlohmann::json& entry);

// Whether the index holds AdamW's moments (false for a weights-only checkpoint).
bool has_moments(hid_t index_file);

// One block of a tensor in a shard, as the index maps it.
struct Block {
  std::string name;  // the tensor's
  std::string file;  // the shard's file name, relative to the checkpoint directory
  std::vector<hsize_t> global, shape, offset;
  bool moments = true;  // false: a buffer, /param alone
};
// What the index records besides the blocks.
struct IndexMeta {
  int64_t step = 0, adam_steps = 0, skipped_in_a_row = 0, seed = 0, consumed_sequences = 0;
  bool weights_only = false;  // only /param: no moments
  std::string recipe;         // to_yaml of the recipe
  nlohmann::json layout;      // world, tp, dp, pp, etp, ep, edp, zero1
  nlohmann::json shards;      // [{file, bytes, crc32c}]
};
// Writes dir/index.h5: for each kind (param, and the moments unless weights_only) and tensor, a
// virtual dataset of its global shape over its blocks; then the attributes. StorageError when the
// file cannot be written.
void write_index(const std::filesystem::path& dir, const std::vector<Block>& blocks,
                 const IndexMeta& meta);
// Renames root/<name>.partial to root/<name> and then points root/latest at it (each step fsynced:
// the atomicity above), then removes all but `keep` checkpoints: the new one and the newest
// keep - 1 others. Throws StorageError when a step fails; then `latest` is as it was, the new
// checkpoint is back under <name>.partial for the caller to remove, and nothing was pruned.
void publish(const std::filesystem::path& root, const std::string& name, int64_t keep);
// The {file, bytes, crc32c} entry of a shard written and fsynced in dir (StorageError when the
// sync fails).
nlohmann::json shard_entry(const std::filesystem::path& dir, const std::string& file);

// fsync of a file or directory; StorageError naming it when that fails.
void fsync_path(const std::filesystem::path& p);
uint32_t file_crc32c(const std::filesystem::path& p);

}  // namespace tmt::ckpt
