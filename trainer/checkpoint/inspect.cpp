// `tramontane inspect`: a checkpoint's step, layout, tensors and recipe (format.h).
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "kernels/base/crc32c.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/format.h"

namespace tmt {
namespace fs = std::filesystem;
using nlohmann::json;
using namespace ckpt;
using h5::Handle;

void print_checkpoint(const std::string& dir_name, bool tensors_only) {
  const fs::path dir(dir_name);
  const fs::path index = dir / "index.h5";
  Handle file = open_index(dir);
  const json shards = read_json_attr(file.id(), "shards", index);
  for (const json& shard : shards) verify_shard(dir, shard);
  if (!tensors_only) {
    fmt::print("checkpoint {}\n", dir.string());
    fmt::print("  format version {}, written by tramontane {}\n", kFormatVersion,
               h5::read_string_attr(file.id(), "tramontane_version").value_or("?"));
    fmt::print("  step {} (AdamW step {}), {} sequences consumed, seed {}\n",
               h5::read_int_attr(file.id(), "step").value_or(-1),
               h5::read_int_attr(file.id(), "adam_steps").value_or(-1),
               h5::read_int_attr(file.id(), "consumed_sequences").value_or(-1),
               h5::read_int_attr(file.id(), "seed").value_or(-1));
    const json layout = read_json_attr(file.id(), "layout", index);
    fmt::print("  written at: {} ranks, tp {} x dp {} x pp {}, etp {} x ep {} x edp {}{}\n",
               layout["world"].get<int64_t>(), layout["tp"].get<int64_t>(),
               layout["dp"].get<int64_t>(), layout["pp"].get<int64_t>(),
               layout["etp"].get<int64_t>(), layout["ep"].get<int64_t>(),
               layout["edp"].get<int64_t>(), layout["zero1"].get<bool>() ? ", zero1" : "");
    fmt::print("  {} shard file(s), checksums verified{}\n", shards.size(),
               has_moments(file.id()) ? "" : "; weights only (no optimizer state)");
    fmt::print("tensors (name, global shape, dtype, crc32c of the f32 little-endian bytes):\n");
  }
  for (const char* kind : kKinds) {
    if (!has_moments(file.id()) && std::string(kind) != "param") continue;
    Handle group(H5Gopen2(file.id(), kind, H5P_DEFAULT), H5Gclose);
    if (!group.ok()) input_error("{}: no group /{}", index.string(), kind);
    hsize_t n = 0;
    H5Gget_num_objs(group.id(), &n);
    std::vector<std::string> names;
    for (hsize_t i = 0; i < n; ++i) {
      const ssize_t len = H5Gget_objname_by_idx(group.id(), i, nullptr, 0);
      std::string s(static_cast<size_t>(len), '\0');
      H5Gget_objname_by_idx(group.id(), i, s.data(), s.size() + 1);
      names.push_back(s);
    }
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      const std::string path = std::string(kind) + "/" + name;
      Handle d(H5Dopen2(file.id(), path.c_str(), H5P_DEFAULT), H5Dclose);
      const auto dims = h5::dataset_dims(d.id());
      hsize_t count = 1;
      for (hsize_t x : dims) count *= x;
      std::vector<float> values(count);
      TMT_H5_CHECK(H5Dread(d.id(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()),
                   "read {}", path);
      const uint32_t crc = crc32c(std::string_view(reinterpret_cast<const char*>(values.data()),
                                                   values.size() * sizeof(float)));
      fmt::print("  {:<40} {:<18} f32 {:08x}\n", path, h5::shape_str(dims), crc);
    }
  }
  if (!tensors_only) {
    fmt::print("recipe:\n{}", h5::read_string_attr(file.id(), "recipe").value_or(""));
  }
}

}  // namespace tmt
