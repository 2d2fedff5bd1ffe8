// `tramontane export` (weights.h): a checkpoint into a Hugging Face model directory.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "kernels/base/check.h"
#include "kernels/fp8.h"
#include "trainer/checkpoint/format.h"
#include "trainer/interop/published.h"
#include "trainer/interop/safetensors.h"
#include "trainer/interop/weights.h"

namespace tmt {
namespace fs = std::filesystem;
using h5::Handle;
using nlohmann::json;

namespace {

// Reads the block `m` describes of the checkpoint's parameter m.param (f32) into out.
void read_published(hid_t index, const TensorMapping& m, std::vector<float>& out) {
  const std::string path = "param/" + m.param;
  Handle d(H5Dopen2(index, path.c_str(), H5P_DEFAULT), H5Dclose);
  if (!d.ok()) input_error("checkpoint: no tensor {} (the model's config has it)", path);
  Handle space(H5Dget_space(d.id()), H5Sclose);
  const auto dims = h5::dataset_dims(d.id());
  TMT_CHECK(dims.size() == m.offset.size(), "export: {} has {} dimensions, expected {}", path,
            dims.size(), m.offset.size());
  std::vector<hsize_t> start(dims.size()), count(dims.size(), 1);
  for (size_t i = 0; i < dims.size(); ++i) start[i] = static_cast<hsize_t>(m.offset[i]);
  const std::vector<int64_t>& block = m.param_block();
  const size_t lead = dims.size() - block.size();
  size_t n = 1;
  for (size_t i = 0; i < block.size(); ++i) {
    count[lead + i] = static_cast<hsize_t>(block[i]);
    n *= static_cast<size_t>(block[i]);
  }
  out.resize(n);
  TMT_H5_CHECK(
      H5Sselect_hyperslab(space.id(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
      "select {}", path);
  Handle mem(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose);
  TMT_H5_CHECK(H5Dread(d.id(), H5T_NATIVE_FLOAT, mem.id(), space.id(), H5P_DEFAULT, out.data()),
               "read {}", path);
}

void from_f32(const std::vector<float>& values, DType dtype, std::span<std::byte> out) {
  if (dtype == DType::kF32) {
    std::memcpy(out.data(), values.data(), out.size());
    return;
  }
  auto* bits = reinterpret_cast<uint16_t*>(out.data());
  const bool bf16 = dtype == DType::kBF16;
  const size_t n = values.size();
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i)
    bits[i] = bf16 ? float_to_bf16(values[i]) : float_to_f16(values[i]);
}

// The dtype a tensor is written in: the export's, but f32 for DeepSeek-V3's expert bias, which
// transformers keeps in f32 (_keep_in_fp32_modules_strict): rounded, it would move the routing.
// An FP8 export writes the linears' and experts' weights in e4m3 (fp8_exported), the rest bf16.
DType tensor_dtype(const TensorMapping& m, DType dtype) {
  if (m.param.ends_with(".moe.expert_bias")) return DType::kF32;
  if (dtype == DType::kF8E4M3) return fp8_exported(m) ? DType::kF8E4M3 : DType::kBF16;
  return dtype;
}

constexpr int64_t kFp8Block = 128;  // weight_block_size

// The scales' shape of an FP8 weight [N, K]: one per 128 x 128 block.
std::vector<int64_t> fp8_scale_shape(const std::vector<int64_t>& shape) {
  return {(shape[0] + kFp8Block - 1) / kFp8Block, (shape[1] + kFp8Block - 1) / kFp8Block};
}

// values [N, K] -> e4m3 bytes and one fp32 scale per block (amax / 448, kernels/fp8.h; 1 for a
// block of zeros): value = e4m3 · scale, as weight_scale_inv is read.
void to_fp8(const std::vector<float>& values, const std::vector<int64_t>& shape,
            std::span<std::byte> out, std::vector<float>& scales) {
  const int64_t rows = shape[0], cols = shape[1];
  const std::vector<int64_t> s = fp8_scale_shape(shape);
  scales.assign(static_cast<size_t>(s[0] * s[1]), 1.0f);
  for (int64_t br = 0; br < s[0]; ++br) {
    for (int64_t bc = 0; bc < s[1]; ++bc) {
      double amax = 0;
      const int64_t r1 = std::min(rows, (br + 1) * kFp8Block),
                    c1 = std::min(cols, (bc + 1) * kFp8Block);
      for (int64_t r = br * kFp8Block; r < r1; ++r) {
        for (int64_t c = bc * kFp8Block; c < c1; ++c)
          amax = std::max(amax, std::fabs(static_cast<double>(values[r * cols + c])));
      }
      const auto scale = static_cast<float>(fp8_scale(amax, false));
      scales[static_cast<size_t>(br * s[1] + bc)] = scale;
      for (int64_t r = br * kFp8Block; r < r1; ++r) {
        for (int64_t c = bc * kFp8Block; c < c1; ++c) {
          const size_t i = static_cast<size_t>(r * cols + c);
          out[i] = static_cast<std::byte>(
              float_to_f8e4m3(static_cast<float>(e4m3(static_cast<double>(values[i]) / scale))));
        }
      }
    }
  }
}

void write_json(const fs::path& path, const json& j) {
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) input_error("{}: cannot write", path.string());
}

}  // namespace

std::string export_weights(const ExportOptions& o) {
  const fs::path dir(o.checkpoint), out(o.out_dir);
  Handle index = ckpt::open_index(dir);
  const fs::path index_path = dir / "index.h5";
  for (const json& shard :
       ckpt::read_json_attr(index.id(), "shards", index_path, json::value_t::array))
    ckpt::verify_shard(dir, shard);
  const auto recipe_text = h5::read_string_attr(index.id(), "recipe");
  if (!recipe_text) input_error("{}: missing attribute recipe", index_path.string());
  const Recipe r = parse_recipe(*recipe_text, index_path.string() + " (recipe)", {});
  const json config = hf_config(r.model, o.dtype);

  if (fs::exists(out) && !fs::is_empty(out))
    input_error("{}: exists and is not empty; export into a new directory", out.string());
  // Written under HF_DIR.partial and renamed when complete: an interrupted export leaves no
  // half-written model where a loader would find it (the next export removes the leftover).
  const fs::path final_out = out;
  const fs::path partial = out.string() + ".partial";
  std::error_code ec;
  fs::remove_all(partial, ec);
  fs::create_directories(partial, ec);
  if (ec) input_error("{}: cannot create: {}", partial.string(), ec.message());

  // Files of at most max_shard_bytes (a larger single tensor gets a file of its own; an FP8
  // weight's scales go with it).
  const std::vector<TensorMapping> mappings =
      tensor_mappings(r.model, PublishedFormat::kHuggingFace);
  std::vector<std::vector<const TensorMapping*>> files(1);
  int64_t in_file = 0, total = 0;
  for (const TensorMapping& m : mappings) {
    const DType dtype = tensor_dtype(m, o.dtype);
    int64_t bytes =
        TensorEntry{"", dtype, m.shape}.numel() * static_cast<int64_t>(dtype_size(dtype));
    if (dtype == DType::kF8E4M3)
      bytes += TensorEntry{"", DType::kF32, fp8_scale_shape(m.shape)}.numel() * 4;
    if (!files.back().empty() && in_file + bytes > o.max_shard_bytes) {
      files.emplace_back();
      in_file = 0;
    }
    files.back().push_back(&m);
    in_file += bytes;
    total += bytes;
  }
  const size_t n = files.size();
  json weight_map = json::object();
  std::vector<float> values;
  for (size_t f = 0; f < n; ++f) {
    const std::string name =
        n == 1 ? "model.safetensors" : fmt::format("model-{:05d}-of-{:05d}.safetensors", f + 1, n);
    std::vector<TensorEntry> entries;
    std::vector<const TensorMapping*> of_entry;  // the mapping each entry comes from
    std::vector<bool> is_scale;
    for (const TensorMapping* m : files[f]) {
      const DType dtype = tensor_dtype(*m, o.dtype);
      entries.push_back({m->published, dtype, m->shape});
      of_entry.push_back(m);
      is_scale.push_back(false);
      weight_map[m->published] = name;
      if (dtype == DType::kF8E4M3) {
        const std::string scale = fp8_scale_name(PublishedFormat::kHuggingFace, m->published);
        entries.push_back({scale, DType::kF32, fp8_scale_shape(m->shape)});
        of_entry.push_back(m);
        is_scale.push_back(true);
        weight_map[scale] = name;
      }
    }
    // An FP8 weight's scales are written right after it, from what quantizing it computed.
    std::vector<float> scales;
    write_safetensors((partial / name).string(), entries, {{"format", "pt"}},
                      [&](size_t i, std::span<std::byte> bytes) {
                        const TensorMapping& m = *of_entry[i];
                        if (is_scale[i]) {
                          TMT_CHECK(bytes.size() == scales.size() * 4,
                                    "export: {}: the scales of another tensor", entries[i].name);
                          std::memcpy(bytes.data(), scales.data(), bytes.size());
                          return;
                        }
                        read_published(index.id(), m, values);
                        if (entries[i].dtype == DType::kF8E4M3) {
                          to_fp8(values, m.shape, bytes, scales);
                        } else {
                          from_f32(values, entries[i].dtype, bytes);
                        }
                      });
  }
  if (n > 1) {
    write_json(partial / "model.safetensors.index.json",
               {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}});
  }
  json written = config;
  if (o.dtype == DType::kF8E4M3) {
    written["torch_dtype"] = "bfloat16";
    written["quantization_config"] = {{"quant_method", "fp8"},
                                      {"fmt", "e4m3"},
                                      {"activation_scheme", "dynamic"},
                                      {"weight_block_size", {kFp8Block, kFp8Block}}};
  }
  write_json(partial / "config.json", written);
  fs::remove(final_out, ec);  // an empty directory the user made
  fs::rename(partial, final_out, ec);
  if (ec) input_error("{}: cannot rename into place: {}", final_out.string(), ec.message());
  return fmt::format(
      "exported {} ({}) to {}: {} tensors in {} file(s), {:.2f} GB of {}", dir.string(),
      config["architectures"][0].get<std::string>(), out.string(), mappings.size(), n,
      static_cast<double>(total) / 1e9,
      o.dtype == DType::kF8E4M3 ? "F8_E4M3 (and BF16)" : safetensors_dtype_name(o.dtype));
}

}  // namespace tmt
