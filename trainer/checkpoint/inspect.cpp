// `tramontane inspect`: a checkpoint's step, layout, tensors and recipe (format.h).
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
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
  const json shards = read_json_attr(file.id(), "shards", index, json::value_t::array);
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
    const json layout = read_json_attr(file.id(), "layout", index, json::value_t::object);
    const auto size = [&](const char* key) {
      const auto it = layout.find(key);
      if (it == layout.end() || !it->is_number_integer())
        input_error("{}: attribute layout: {} is not an integer", index.string(), key);
      return it->get<int64_t>();
    };
    std::vector<int64_t> sizes;  // checked in order, so the first bad key is the one named
    for (const char* key : {"world", "tp", "dp", "pp", "etp", "ep", "edp"})
      sizes.push_back(size(key));
    const auto zero1 = layout.find("zero1");
    if (zero1 == layout.end() || !zero1->is_boolean())
      input_error("{}: attribute layout: zero1 is not true or false", index.string());
    fmt::print("  written at: {} ranks, tp {} x dp {} x pp {}, etp {} x ep {} x edp {}{}\n",
               sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6],
               zero1->get<bool>() ? ", zero1" : "");
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
      if (len < 0) {  // a damaged link (was a std::length_error from a string of -1 characters)
        input_error("{}: /{}: the name of member {} cannot be read: {}", index.string(), kind, i,
                    h5::last_error());
      }
      std::string s(static_cast<size_t>(len), '\0');
      H5Gget_objname_by_idx(group.id(), i, s.data(), s.size() + 1);
      names.push_back(s);
    }
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      const std::string path = std::string(kind) + "/" + name;
      Handle d(H5Dopen2(file.id(), path.c_str(), H5P_DEFAULT), H5Dclose);
      if (!d.ok()) input_error("{}: /{} is not a dataset", index.string(), path);
      const auto dims = h5::dataset_dims(d.id());
      hsize_t count = 1;
      for (hsize_t x : dims) {
        if (__builtin_mul_overflow(count, x, &count) || count > SIZE_MAX / sizeof(float)) {
          input_error("{}: /{}: its shape {} has more elements than memory can hold",
                      index.string(), path, h5::shape_str(dims));
        }
      }
      std::vector<float> values(count);
      if (H5Dread(d.id(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) < 0)
        input_error("{}: /{}: cannot be read as f32: {}", index.string(), path, h5::last_error());
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
