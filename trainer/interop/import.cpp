// `tramontane import` (weights.h): a published model directory into a run directory.
#include <fmt/format.h>
#include <sys/resource.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "kernels/base/check.h"
#include "trainer/checkpoint/format.h"
#include "trainer/interop/published.h"
#include "trainer/interop/safetensors.h"
#include "trainer/interop/weights.h"
#include "trainer/model/model.h"

namespace tmt {
namespace fs = std::filesystem;
using h5::Handle;
using nlohmann::json;

namespace {

// The published files of a model directory and where each tensor is.
struct SourceFiles {
  std::vector<MappedSafetensors> files;
  std::map<std::string, std::pair<size_t, const TensorEntry*>> tensors;  // name -> file, entry
  fs::path listing;  // what names the tensors: the index, or the single file, or the directory
};

SourceFiles open_source_files(const PublishedConfig& cfg, const fs::path& dir) {
  SourceFiles s;
  std::vector<fs::path> paths;
  json weight_map;
  if (cfg.format == PublishedFormat::kHuggingFace) {
    const fs::path index = dir / "model.safetensors.index.json";
    if (fs::exists(index)) {
      s.listing = index;
      std::ifstream in(index);
      try {
        weight_map = json::parse(in).at("weight_map");
        if (!weight_map.is_object()) throw std::runtime_error("weight_map is not an object");
      } catch (const std::exception& e) {
        input_error("{}: not a safetensors index (weight_map: name -> file): {}", index.string(),
                    e.what());
      }
      std::vector<std::string> names;
      for (const auto& [tensor, file] : weight_map.items()) {
        if (!file.is_string())
          input_error("{}: weight_map.{}: expected a file name", index.string(), tensor);
        names.push_back(file.get<std::string>());
      }
      std::sort(names.begin(), names.end());
      names.erase(std::unique(names.begin(), names.end()), names.end());
      for (const std::string& n : names) paths.push_back(dir / n);
    } else if (fs::exists(dir / "model.safetensors")) {
      s.listing = dir / "model.safetensors";
      paths.push_back(s.listing);
    } else {
      input_error(
          "{}: no model.safetensors or model.safetensors.index.json (tramontane reads "
          "safetensors weights; convert pytorch_model.bin first)",
          dir.string());
    }
  } else {
    s.listing = dir;
    for (const auto& e : fs::directory_iterator(dir)) {
      const std::string n = e.path().filename().string();
      if (n.rfind("consolidated", 0) == 0 && e.path().extension() == ".safetensors")
        paths.push_back(e.path());
    }
    std::sort(paths.begin(), paths.end());
    if (paths.empty())
      input_error("{}: params.json but no consolidated*.safetensors beside it", dir.string());
  }
  for (const fs::path& p : paths) {
    if (!fs::exists(p)) input_error("{}: missing (listed in {})", p.string(), s.listing.string());
    s.files.emplace_back(p.string());
  }
  for (size_t f = 0; f < s.files.size(); ++f) {
    for (const TensorEntry& t : s.files[f].tensors()) {
      const auto [it, fresh] = s.tensors.try_emplace(t.name, f, &t);
      if (!fresh) {
        input_error("{}: tensor {} is also in {}", s.files[f].path(), t.name,
                    s.files[it->second.first].path());
      }
    }
  }
  for (const auto& [tensor, file] : weight_map.items()) {
    const auto it = s.tensors.find(tensor);
    if (it == s.tensors.end() ||
        fs::path(s.files[it->second.first].path()).filename() != file.get<std::string>()) {
      input_error("{}: tensor {} is listed in {}, which does not hold it", s.listing.string(),
                  tensor, file.get<std::string>());
    }
  }
  return s;
}

// The source tensor's values as f32 (bf16 and f16 widen exactly).
void to_f32(const TensorEntry& t, std::span<const std::byte> bytes, std::vector<float>& out) {
  const auto n = static_cast<size_t>(t.numel());
  out.resize(n);
  if (t.dtype == DType::kF32) {
    std::memcpy(out.data(), bytes.data(), n * sizeof(float));
    return;
  }
  const auto* bits = reinterpret_cast<const uint16_t*>(bytes.data());
  const bool bf16 = t.dtype == DType::kBF16;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) {
    uint16_t b;
    std::memcpy(&b, bits + i, 2);  // the data may sit at any offset
    out[i] = bf16 ? bf16_to_float(b) : f16_to_float(b);
  }
}

// FP8 weights: e4m3 values times their scale (fp8_scale_name), one number for the tensor or one
// per block of block[0] x block[1] (the blocks at the right and bottom edges cut short).

bool is_block_scale(const TensorEntry& w, const TensorEntry& scale,
                    const std::vector<int64_t>& block) {
  return w.shape.size() == 2 && scale.shape.size() == 2 &&
         scale.shape[0] == (w.shape[0] + block[0] - 1) / block[0] &&
         scale.shape[1] == (w.shape[1] + block[1] - 1) / block[1];
}

void dequantize(const TensorEntry& w, std::span<const std::byte> bytes,
                const std::vector<float>& scale, const std::vector<int64_t>& block,
                std::vector<float>& out) {
  const auto n = static_cast<size_t>(w.numel());
  out.resize(n);
  const int64_t cols = w.shape.size() == 2 ? w.shape[1] : static_cast<int64_t>(n);
  const int64_t scale_cols = (cols + block[1] - 1) / block[1];
  const bool per_tensor = scale.size() == 1;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) {
    const int64_t r = static_cast<int64_t>(i) / cols, c = static_cast<int64_t>(i) % cols;
    const float s = per_tensor
                        ? scale[0]
                        : scale[static_cast<size_t>(r / block[0] * scale_cols + c / block[1])];
    out[i] = f8e4m3_to_float(static_cast<uint8_t>(bytes[i])) * s;
  }
}

std::string gb(double bytes) { return fmt::format("{:.2f} GB", bytes / 1e9); }

}  // namespace

std::string import_weights(const ImportOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  const fs::path src(o.source), out(o.out_dir);
  const PublishedConfig cfg = read_published_config(src);
  if (fs::exists(out / "recipe.yaml") || fs::exists(out / "checkpoints" / "latest")) {
    input_error(
        "{}: already holds a run (recipe.yaml or checkpoints/); import into a new directory",
        out.string());
  }

  // The recipe: the published model, the rest from the default recipe, then the user's --set.
  Recipe base = load_recipe("", {});
  base.model = cfg.model;
  base.parallel = ParallelConfig{};
  base.data.seq_len = std::min(base.data.seq_len, cfg.model.max_seq_len);
  base.run.dir = out.string();
  base.run.name =
      out.filename().empty() ? out.parent_path().filename().string() : out.filename().string();
  const fs::path recipe_path = out / "recipe.yaml";
  Recipe r =
      parse_recipe(to_yaml(base, YamlKeys::kDerivedAsNull), recipe_path.string(), o.overrides);
  const auto want = ckpt::shape_keys(cfg.model), have = ckpt::shape_keys(r.model);
  for (size_t i = 0; i < std::min(want.size(), have.size()); ++i) {
    if (want[i] != have[i]) {
      input_error("{}: {}: the published model has {}; the weights decide the model's shape",
                  r.origin_of(have[i].first), have[i].first, want[i].second);
    }
  }
  {
    Recipe resolved = r;
    resolve_layout(resolved,
                   required_world(r) > 0 ? required_world(r) : r.parallel.tp * r.parallel.pp);
  }

  // Every tensor checked before anything is written.
  const SourceFiles s = open_source_files(cfg, src);
  const std::vector<TensorMapping> mappings = tensor_mappings(cfg.model, cfg.format);
  std::map<std::string, std::vector<const TensorMapping*>> by_param;
  std::map<std::string, bool> used;
  double source_bytes = 0;
  for (const TensorMapping& m : mappings) {
    const auto it = s.tensors.find(m.published);
    if (it == s.tensors.end()) {
      input_error("{}: no tensor {} (a {} of {}'s sizes has it)", s.listing.string(), m.published,
                  cfg.architecture, cfg.file.filename().string());
    }
    const TensorEntry& t = *it->second.second;
    const std::string& file = s.files[it->second.first].path();
    if (t.dtype == DType::kF8E4M3 && cfg.fp8) {
      const std::string scale_name = fp8_scale_name(cfg.format, m.published);
      const auto sc = s.tensors.find(scale_name);
      if (sc == s.tensors.end()) {
        input_error("{}: tensor {} is F8_E4M3 but {} is missing", file, t.name, scale_name);
      }
      const TensorEntry& scale = *sc->second.second;
      if (scale.dtype != DType::kBF16 && scale.dtype != DType::kF16 && scale.dtype != DType::kF32) {
        input_error("{}: tensor {}: dtype {}, a scale is BF16, F16 or F32",
                    s.files[sc->second.first].path(), scale.name,
                    safetensors_dtype_name(scale.dtype));
      }
      if (scale.numel() != 1 && !is_block_scale(t, scale, cfg.fp8_block)) {
        input_error("{}: tensor {} is {}: neither one scale nor one per {}x{} block of {}'s {}",
                    s.files[sc->second.first].path(), scale.name, shape_text(scale.shape),
                    cfg.fp8_block[0], cfg.fp8_block[1], t.name, shape_text(t.shape));
      }
      used[scale.name] = true;
    } else if (t.dtype != DType::kBF16 && t.dtype != DType::kF16 && t.dtype != DType::kF32) {
      input_error("{}: tensor {}: dtype {}, import reads BF16, F16 and F32{}", file, t.name,
                  safetensors_dtype_name(t.dtype),
                  t.dtype != DType::kF8E4M3 ? ""
                  : cfg.format == PublishedFormat::kMistral
                      ? " (F8_E4M3 with params.json's quantization)"
                      : " (F8_E4M3 with config.json's quantization_config)");
    }
    if (t.shape != m.shape) {
      input_error("{}: tensor {} is {}, {} implies {}", file, t.name, shape_text(t.shape),
                  cfg.file.filename().string(), shape_text(m.shape));
    }
    used[m.published] = true;
    by_param[m.param].push_back(&m);
    source_bytes += static_cast<double>(t.end - t.begin);
  }
  for (const auto& [name, where] : s.tensors) {
    // A tied model's head is its embedding: a saved copy of it is not read.
    const bool tied_head =
        cfg.model.tie_embeddings && (name == "lm_head.weight" || name == "output.weight");
    // FP8 activation scales are for inference kernels: not weights.
    const bool act_scale = cfg.fp8 && name.ends_with(".qscale_act");
    if (!used.count(name) && !is_ignorable_tensor(name) && !tied_head && !act_scale) {
      input_error("{}: tensor {} is not part of a {} of {}'s sizes", s.files[where.first].path(),
                  name, cfg.architecture, cfg.file.filename().string());
    }
  }

  // The model's parameters, as the trainer declares them (a dry model allocates nothing).
  ModelRun run{.dtype = DType::kF32, .micro_batch = 1, .seq_len = r.data.seq_len, .dry = true};
  const Model model(r.model, run, Context{Device::kCpu, nullptr});

  h5::quiet_hdf5();
  const fs::path root = out / "checkpoints";
  const std::string name = ckpt::step_name(0);
  const fs::path partial = root / (name + ".partial");
  std::error_code ec;
  fs::remove_all(partial, ec);
  fs::create_directories(partial, ec);
  if (ec) input_error("{}: cannot create: {}", partial.string(), ec.message());

  // One shard per layer, one for the embedding and one for the final norm and head.
  ckpt::IndexMeta meta;
  meta.weights_only = true;
  meta.seed = static_cast<int64_t>(r.train.seed);
  meta.recipe = to_yaml(r);
  meta.layout = {{"world", 1}, {"tp", 1}, {"dp", 1},  {"pp", 1},
                 {"etp", 1},   {"ep", 1}, {"edp", 1}, {"zero1", false}};
  meta.shards = json::array();
  std::vector<ckpt::Block> blocks;
  Handle shard;
  std::string shard_file;
  const auto close_shard = [&] {
    if (!shard.ok()) return;
    H5Fflush(shard.id(), H5F_SCOPE_GLOBAL);
    shard = Handle();
    meta.shards.push_back(ckpt::shard_entry(partial, shard_file));
  };
  std::vector<float> values, scales;
  double written = 0;
  for (const Param& p : model.params().all()) {
    int64_t part = r.model.n_layers + 1;
    if (p.spec.name == "embedding") part = 0;
    if (p.spec.name.rfind("layers.", 0) == 0) part = 1 + std::stoll(p.spec.name.substr(7));
    const std::string file = fmt::format("part-{:05d}.h5", part);
    if (file != shard_file) {
      close_shard();
      shard_file = file;
      shard = Handle(H5Fcreate((partial / file).c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
                     H5Fclose);
      TMT_H5_CHECK(shard.id(), "create {}", (partial / file).string());
    }
    const auto& parts = by_param[p.spec.name];
    int64_t covered = 0;
    for (const TensorMapping* m : parts) covered += TensorEntry{"", DType::kF32, m->shape}.numel();
    TMT_CHECK(covered == p.spec.global_shape.numel(),
              "import: the published tensors cover {} of {}'s {} elements", covered, p.spec.name,
              p.spec.global_shape.numel());

    const auto dims = h5::dims_of(p.spec.global_shape);
    const std::string path = "param/" + p.spec.name;
    Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
    Handle lcpl = h5::link_props();
    Handle d(H5Dcreate2(shard.id(), path.c_str(), H5T_IEEE_F32LE, space.id(), lcpl.id(),
                        H5P_DEFAULT, H5P_DEFAULT),
             H5Dclose);
    TMT_H5_CHECK(d.id(), "create {}", path);
    for (const TensorMapping* m : parts) {
      const auto& [f, entry] = s.tensors.at(m->published);
      if (entry->dtype == DType::kF8E4M3) {
        const auto& [sf, scale] = s.tensors.at(fp8_scale_name(cfg.format, m->published));
        to_f32(*scale, s.files[sf].bytes(*scale), scales);
        dequantize(*entry, s.files[f].bytes(*entry), scales, cfg.fp8_block, values);
      } else {
        to_f32(*entry, s.files[f].bytes(*entry), values);
      }
      s.files[f].release(*entry);
      if (m->interleaved_heads > 0) {
        deinterleave_rotary_rows(values.data(), m->interleaved_heads, r.model.head_dim,
                                 m->shape.back());
      }
      std::vector<hsize_t> start(dims.size()), count(dims.size(), 1);
      for (size_t i = 0; i < dims.size(); ++i) start[i] = static_cast<hsize_t>(m->offset[i]);
      const std::vector<int64_t>& block = m->param_block();
      const size_t lead = dims.size() - block.size();
      for (size_t i = 0; i < block.size(); ++i) count[lead + i] = static_cast<hsize_t>(block[i]);
      Handle mem(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose);
      TMT_H5_CHECK(H5Sselect_hyperslab(space.id(), H5S_SELECT_SET, start.data(), nullptr,
                                       count.data(), nullptr),
                   "select {}", path);
      TMT_H5_CHECK(
          H5Dwrite(d.id(), H5T_NATIVE_FLOAT, mem.id(), space.id(), H5P_DEFAULT, values.data()),
          "write {} from {}", path, m->published);
      written += static_cast<double>(values.size()) * sizeof(float);
    }
    const hsize_t rank = dims.size();
    const std::vector<int64_t> zeros(rank, 0);
    Handle aspace(H5Screate_simple(1, &rank, nullptr), H5Sclose);
    Handle attr(H5Acreate2(d.id(), "offset", H5T_STD_I64LE, aspace.id(), H5P_DEFAULT, H5P_DEFAULT),
                H5Aclose);
    TMT_H5_CHECK(H5Awrite(attr.id(), H5T_NATIVE_INT64, zeros.data()), "{} offset", path);
    blocks.push_back({p.spec.name, file, dims, dims, std::vector<hsize_t>(rank, 0)});
  }
  close_shard();
  ckpt::write_index(partial, blocks, meta);
  ckpt::publish(root, name, r.checkpoint.keep);

  const std::string tmp = recipe_path.string() + ".tmp";
  {
    std::ofstream y(tmp);
    y << fmt::format(
        "# Imported by `tramontane import` from {} ({}). The model section is the published\n"
        "# model's (its shape must stay); edit data, parallel, optimizer, schedule and train,\n"
        "# then `tramontane train {}` starts from its weights (checkpoints/{}).\n",
        fs::absolute(src).string(), cfg.architecture, recipe_path.string(), name);
    y << to_yaml(r, YamlKeys::kDerivedAsNull);
    if (!y) input_error("{}: cannot write", tmp);
  }
  fs::rename(tmp, recipe_path, ec);
  if (ec) input_error("{}: cannot write: {}", recipe_path.string(), ec.message());

  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return fmt::format(
      "imported {} from {}: {} tensors ({}) -> {} and {} ({} of f32 weights) in {:.1f} s, peak "
      "RSS {:.0f} MB",
      cfg.architecture, src.string(), mappings.size(), gb(source_bytes), recipe_path.string(),
      (root / name).string(), gb(written), seconds, static_cast<double>(usage.ru_maxrss) / 1024);
}

}  // namespace tmt
