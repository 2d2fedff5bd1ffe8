// Checking and loading a checkpoint (format.h): every shard verified before anything is read,
// then each of this rank's blocks read as a hyperslab of its global tensor.
#include <fmt/format.h>

#include <filesystem>
#include <vector>

#include "kernels/copy.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/format.h"

namespace tmt {
namespace fs = std::filesystem;
using nlohmann::json;
using namespace ckpt;
using h5::Handle;

namespace {

// Reads the block of global tensor `path` that `spec` describes into t (f32, on any device).
void read_block(hid_t file, const std::string& path, const ParamSpec& spec, const Tensor& t) {
  Handle d(H5Dopen2(file, path.c_str(), H5P_DEFAULT), H5Dclose);
  TMT_CHECK(d.ok(), "checkpoint: no dataset {}", path);
  Handle space(H5Dget_space(d.id()), H5Sclose);
  const auto count = h5::dims_of(spec.local_shape);
  std::vector<hsize_t> start(count.size());
  for (size_t i = 0; i < count.size(); ++i) start[i] = static_cast<hsize_t>(spec.offset[i]);
  TMT_H5_CHECK(
      H5Sselect_hyperslab(space.id(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
      "select {}", path);
  Handle mem(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose);
  std::vector<float> staging;  // a device block's values, read on the host first
  if (t.device != Device::kCpu) staging.resize(static_cast<size_t>(t.numel()));
  void* values = t.device == Device::kCpu ? t.data : staging.data();
  TMT_H5_CHECK(H5Dread(d.id(), H5T_NATIVE_FLOAT, mem.id(), space.id(), H5P_DEFAULT, values),
               "read {}", path);
  if (t.device != Device::kCpu) copy_from_host(Context{t.device, nullptr}, t, values);
}

}  // namespace

void check_checkpoint(const std::string& dir_name, const Recipe& r, const ParamStore& params,
                      int rank, int world, LoadWhat what) {
  const fs::path dir(dir_name);
  const fs::path index = dir / "index.h5";
  Handle file = open_index(dir);
  // The model the checkpoint was written for.
  const auto recipe_text = h5::read_string_attr(file.id(), "recipe");
  if (!recipe_text) input_error("{}: missing attribute recipe", index.string());
  Recipe saved;
  try {
    saved = parse_recipe(*recipe_text, index.string() + " (recipe)", {});
  } catch (const InputError&) {
    input_error("{}: its recipe attribute does not parse", index.string());
  }
  const auto want = shape_keys(r.model), have = shape_keys(saved.model);
  for (size_t i = 0; i < std::min(want.size(), have.size()); ++i) {
    if (want[i] != have[i]) {
      input_error(
          "{}: {}: the checkpoint's model has {}, the recipe {} (a checkpoint loads only "
          "into the model it was saved from)",
          index.string(), want[i].first, have[i].second, want[i].second);
    }
  }
  // The shards this rank verifies.
  const json shards = read_json_attr(file.id(), "shards", index, json::value_t::array);
  for (size_t i = static_cast<size_t>(rank); i < shards.size(); i += static_cast<size_t>(world)) {
    verify_shard(dir, shards[i]);
  }
  // The tensors this rank reads.
  const bool moments = what == LoadWhat::kTrainingState && has_moments(file.id());
  for (const Param& p : params.all()) {
    for (const char* kind : kKinds) {
      if ((!moments || !p.spec.trainable) && std::string(kind) != "param") continue;
      const std::string path = std::string(kind) + "/" + p.spec.name;
      if (H5Lexists(file.id(), kind, H5P_DEFAULT) <= 0 ||
          H5Lexists(file.id(), path.c_str(), H5P_DEFAULT) <= 0) {
        input_error("{}: no tensor {} (the recipe's model has it)", index.string(), path);
      }
      Handle d(H5Dopen2(file.id(), path.c_str(), H5P_DEFAULT), H5Dclose);
      const auto dims = h5::dataset_dims(d.id());
      if (dims != h5::dims_of(p.spec.global_shape)) {
        input_error("{}: {} is {} in the checkpoint, {} in the recipe's model", index.string(),
                    path, h5::shape_str(dims), h5::shape_str(h5::dims_of(p.spec.global_shape)));
      }
    }
  }
}

TrainingState load_checkpoint(const std::string& dir, ParamStore& params, Optimizer& optimizer,
                              LoadWhat what) {
  Handle file = open_index(dir);
  const bool moments = what == LoadWhat::kTrainingState && has_moments(file.id());
  TrainingState state;
  state.step = h5::read_int_attr(file.id(), "step").value_or(0);
  state.adam_steps = h5::read_int_attr(file.id(), "adam_steps").value_or(0);
  state.skipped_in_a_row = h5::read_int_attr(file.id(), "skipped_in_a_row").value_or(0);
  for (const Param& p : params.all()) {  // the buffers, in no group
    if (!p.spec.trainable) read_block(file.id(), "param/" + p.spec.name, p.spec, p.value);
  }
  for (size_t g = 0; g < params.groups().size(); ++g) {
    const ParamGroup& pg = params.groups()[g];
    if (!moments) {
      for (const Param& p : params.all()) {
        if (p.spec.trainable && group_of(p, params) == g)
          read_block(file.id(), "param/" + p.spec.name, p.spec, p.value);
      }
      continue;
    }
    const auto n = pg.values.numel();
    std::vector<float> m(static_cast<size_t>(n), 0.0f), v(m.size(), 0.0f);
    const Tensor mg{m.data(), DType::kF32, Device::kCpu, Shape{n}};
    const Tensor vg{v.data(), DType::kF32, Device::kCpu, Shape{n}};
    for (const Param& p : params.all()) {
      if (!p.spec.trainable || p.spec.kind != pg.kind || p.spec.decay != pg.decay ||
          p.spec.tp_replicas != pg.tp_replicas) {
        continue;
      }
      read_block(file.id(), "param/" + p.spec.name, p.spec, p.value);
      read_block(file.id(), "exp_avg/" + p.spec.name, p.spec, block_of(mg, p, pg));
      read_block(file.id(), "exp_avg_sq/" + p.spec.name, p.spec, block_of(vg, p, pg));
    }
    optimizer.import_moments(g, mg, vg, state.adam_steps);
  }
  params.sync_weights();  // the model computes with the loaded values' compute-dtype copy
  return state;
}

}  // namespace tmt
