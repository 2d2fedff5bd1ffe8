#include "trainer/checkpoint/format.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>

#include "kernels/base/crc32c.h"

namespace tmt::ckpt {
namespace fs = std::filesystem;
using nlohmann::json;

std::string step_name(int64_t step) { return fmt::format("step-{:07d}", step); }
std::string shard_name(int rank) { return fmt::format("rank-{:05d}.h5", rank); }

int64_t offset_in_group(const Param& p, const ParamGroup& g) {
  return (static_cast<const std::byte*>(p.value.data) -
          static_cast<const std::byte*>(g.values.data)) /
         static_cast<int64_t>(dtype_size(p.value.dtype));
}

size_t group_of(const Param& p, const ParamStore& params) {
  for (size_t i = 0; i < params.groups().size(); ++i) {
    const ParamGroup& g = params.groups()[i];
    const int64_t off = offset_in_group(p, g);
    if (off >= 0 && off < g.values.numel()) return i;
  }
  TMT_CHECK(false, "parameter {} is in no group", p.spec.name);
}

Tensor block_of(const Tensor& flat, const Param& p, const ParamGroup& g) {
  Tensor t = flat;
  t.data = static_cast<std::byte*>(flat.data) +
           static_cast<size_t>(offset_in_group(p, g)) * dtype_size(flat.dtype);
  t.shape = p.spec.local_shape;
  return t;
}

std::vector<std::pair<std::string, std::string>> shape_keys(const ModelConfig& m) {
  std::vector<std::pair<std::string, std::string>> k = {
      {"model.vocab_size", std::to_string(m.vocab_size)},
      {"model.d_model", std::to_string(m.d_model)},
      {"model.n_layers", std::to_string(m.n_layers)},
      {"model.n_heads", std::to_string(m.n_heads)},
      {"model.n_kv_heads", std::to_string(m.n_kv_heads)},
      {"model.head_dim", std::to_string(m.head_dim)},
      {"model.ffn_hidden", std::to_string(m.ffn_hidden)},
      {"model.tie_embeddings", m.tie_embeddings ? "true" : "false"},
      {"model.attention", std::string(name_of(m.attention))}};
  if (m.is_mla()) {
    k.insert(k.end(), {{"model.mla.q_lora_rank", std::to_string(m.mla->q_lora_rank)},
                       {"model.mla.kv_lora_rank", std::to_string(m.mla->kv_lora_rank)},
                       {"model.mla.qk_nope_head_dim", std::to_string(m.mla->qk_nope_head_dim)},
                       {"model.mla.qk_rope_head_dim", std::to_string(m.mla->qk_rope_head_dim)},
                       {"model.mla.v_head_dim", std::to_string(m.mla->v_head_dim)}});
  }
  k.emplace_back("model.moe", m.moe ? "present" : "absent");
  if (m.moe) {
    std::string layers;
    for (int64_t l = 0; l < m.n_layers; ++l) layers += m.is_moe_layer(l) ? 'M' : 'D';
    k.insert(
        k.end(),
        {{"model.moe.n_experts", std::to_string(m.moe->n_experts)},
         {"model.moe.expert_ffn_hidden", std::to_string(m.moe->expert_ffn_hidden)},
         {"model.moe.n_shared_experts", std::to_string(m.moe->n_shared_experts)},
         {"model.moe.shared_expert_ffn_hidden", std::to_string(m.moe->shared_expert_ffn_hidden)},
         {"model.moe.first_dense_layers (MoE layers)", layers},
         {"model.moe.bias_update_rate (an expert bias)", m.moe->expert_bias() ? "yes" : "no"}});
  }
  return k;
}

h5::Handle open_index(const fs::path& dir) {
  h5::quiet_hdf5();
  const fs::path index = dir / "index.h5";
  if (!fs::exists(index)) {
    input_error("{}: not a complete checkpoint (no index.h5{})", dir.string(),
                fs::exists(dir) ? "" : "; the directory does not exist");
  }
  h5::Handle file(H5Fopen(index.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.ok()) input_error("{}: not an HDF5 file, or damaged", index.string());
  const auto version = h5::read_int_attr(file.id(), "format_version");
  if (!version)
    input_error("{}: no format_version attribute: not a tramontane checkpoint", index.string());
  if (*version != kFormatVersion) {
    input_error("{}: checkpoint format version {}, this tramontane reads version {}",
                index.string(), *version, kFormatVersion);
  }
  return file;
}

json read_json_attr(hid_t file, const char* name, const fs::path& index, json::value_t type) {
  const auto text = h5::read_string_attr(file, name);
  if (!text) input_error("{}: missing attribute {}", index.string(), name);
  json j;
  try {
    j = json::parse(*text);
  } catch (const json::exception&) {
    input_error("{}: attribute {} is not valid JSON", index.string(), name);
  }
  if (j.type() != type) {
    input_error("{}: attribute {} is not a JSON {}", index.string(), name, json(type).type_name());
  }
  return j;
}

void verify_shard(const fs::path& dir, const json& entry) {
  // What save wrote: a file name of the checkpoint directory, its size and checksum.
  const auto has = [&](const char* key, bool (json::*is)() const noexcept) {
    const auto it = entry.find(key);
    return it != entry.end() && ((*it).*is)();
  };
  if (!entry.is_object() || !has("file", &json::is_string) ||
      !has("bytes", &json::is_number_integer) || !has("crc32c", &json::is_number_unsigned) ||
      entry["file"].get<std::string>().find('/') != std::string::npos || entry["file"] == "" ||
      entry["file"] == "." || entry["file"] == "..") {
    input_error(
        "{}: attribute shards: {} is not an entry {{\"file\": a name in the directory, "
        "\"bytes\": an integer, \"crc32c\": an integer >= 0}}",
        (dir / "index.h5").string(), entry.dump());
  }
  const fs::path shard = dir / entry["file"].get<std::string>();
  std::error_code ec;
  const auto bytes = fs::file_size(shard, ec);
  if (ec) input_error("{}: shard missing (the index lists it)", shard.string());
  if (static_cast<int64_t>(bytes) != entry["bytes"].get<int64_t>()) {
    input_error("{}: {} bytes, the index says {} (truncated or overwritten)", shard.string(), bytes,
                entry["bytes"].get<int64_t>());
  }
  if (file_crc32c(shard) != entry["crc32c"].get<uint32_t>())
    input_error("{}: checksum mismatch (the file is damaged)", shard.string());
}

bool has_moments(hid_t index_file) {
  return h5::read_int_attr(index_file, "weights_only").value_or(0) == 0;
}

namespace {

// The index's datasets and attributes, then a flush (write_index).
void write_index_contents(hid_t file_id, const fs::path& path, const std::vector<Block>& blocks,
                          const IndexMeta& meta) {
  using h5::Handle;
  std::map<std::string, std::vector<const Block*>> tensors;  // name -> its blocks
  for (const Block& b : blocks) tensors[b.name].push_back(&b);
  Handle lcpl = h5::link_props();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const char* kind : kKinds) {
    if (meta.weights_only && std::string(kind) != "param") continue;
    for (const auto& [name, parts] : tensors) {
      if (!parts.front()->moments && std::string(kind) != "param") continue;  // a buffer
      const auto& global = parts.front()->global;
      Handle space(H5Screate_simple(static_cast<int>(global.size()), global.data(), nullptr),
                   H5Sclose);
      Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
      H5Pset_fill_value(dcpl.id(), H5T_NATIVE_FLOAT, &nan);
      const std::string dataset = std::string(kind) + "/" + name;
      for (const Block* b : parts) {
        Handle src(H5Screate_simple(static_cast<int>(b->shape.size()), b->shape.data(), nullptr),
                   H5Sclose);
        TMT_H5_CHECK(H5Sselect_hyperslab(space.id(), H5S_SELECT_SET, b->offset.data(), nullptr,
                                         b->shape.data(), nullptr),
                     "select {}", dataset);
        TMT_H5_CHECK(
            H5Pset_virtual(dcpl.id(), space.id(), b->file.c_str(), dataset.c_str(), src.id()),
            "map {}", dataset);
      }
      H5Sselect_all(space.id());
      Handle d(H5Dcreate2(file_id, dataset.c_str(), H5T_IEEE_F32LE, space.id(), lcpl.id(),
                          dcpl.id(), H5P_DEFAULT),
               H5Dclose);
      TMT_H5_WRITE(d.id(), path.string(), "create {}", dataset);
    }
  }
  for (const auto& [key, value] :
       {std::pair{"step", meta.step}, std::pair{"adam_steps", meta.adam_steps},
        std::pair{"skipped_in_a_row", meta.skipped_in_a_row}, std::pair{"seed", meta.seed},
        std::pair{"consumed_sequences", meta.consumed_sequences},
        std::pair{"format_version", kFormatVersion}}) {
    h5::write_int_attr(file_id, key, value);
  }
  if (meta.weights_only) h5::write_int_attr(file_id, "weights_only", 1);
  h5::write_string_attr(file_id, "tramontane_version", TMT_VERSION);
  h5::write_string_attr(file_id, "recipe", meta.recipe);
  h5::write_string_attr(file_id, "layout", meta.layout.dump());
  h5::write_string_attr(file_id, "shards", meta.shards.dump());
  // HDF5 keeps the metadata in its cache: a full disk shows here, not in the calls above.
  TMT_H5_WRITE(H5Fflush(file_id, H5F_SCOPE_GLOBAL), path.string(), "flush");
}

}  // namespace

void write_index(const fs::path& dir, const std::vector<Block>& blocks, const IndexMeta& meta) {
  const fs::path path = dir / "index.h5";
  // Metadata only: each block's mapping, each tensor's dataset, the recipe and the shard list.
  const uint64_t reserved =
      (64 << 10) + 3 * blocks.size() * (2 << 10) + meta.recipe.size() + meta.shards.dump().size();
  h5::write_file(path.string(), reserved,
                 [&](hid_t file) { write_index_contents(file, path, blocks, meta); });
}

json shard_entry(const fs::path& dir, const std::string& file) {
  const fs::path path = dir / file;
  fsync_path(path);
  std::error_code ec;
  const auto bytes = fs::file_size(path, ec);
  if (ec) storage_error(path.string(), ec.value());
  return {{"file", file}, {"bytes", static_cast<int64_t>(bytes)}, {"crc32c", file_crc32c(path)}};
}

namespace {

// The step of a complete checkpoint's directory name ("step-0000100" -> 100), nullopt for
// anything else (step-NNNNNNN.partial, step-NNNNNNN.replaced, latest).
std::optional<int64_t> step_of(const std::string& n) {
  if (n.size() <= 5 || n.rfind("step-", 0) != 0) return std::nullopt;
  if (!std::all_of(n.begin() + 5, n.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::stoll(n.substr(5));
}

// Removes all but `keep` complete checkpoints of root: `latest` (just published) and the newest
// keep - 1 others. The one `latest` names stays even when others have later steps (a run resumed
// from an older checkpoint writes beside the newer ones of the run it left).
void prune(const fs::path& root, const std::string& latest, int64_t keep) {
  std::error_code ec;
  std::vector<std::pair<int64_t, fs::path>> others;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string n = e.path().filename().string();
    const auto step = step_of(n);
    if (step && n != latest && e.is_directory(ec)) others.emplace_back(*step, e.path());
  }
  std::sort(others.begin(), others.end(), std::greater<>());
  for (size_t i = static_cast<size_t>(std::max<int64_t>(keep, 1)) - 1; i < others.size(); ++i)
    fs::remove_all(others[i].second, ec);
}

}  // namespace

void publish(const fs::path& root, const std::string& name, int64_t keep) {
  const fs::path partial = root / (name + ".partial"), final_dir = root / name;
  const fs::path replaced = root / (name + ".replaced");
  fsync_path(partial / "index.h5");
  fsync_path(partial);
  std::error_code ec;
  // An older save of the same step (a rerun after a crash) is moved aside, and deleted only once
  // `latest` names the new one; until then a failure puts it back.
  fs::remove_all(replaced, ec);
  if (fs::exists(final_dir, ec)) {
    fs::rename(final_dir, replaced, ec);
    if (ec) storage_error(final_dir.string(), ec.value());
  }
  const auto undo = [&] {
    std::error_code ignored;
    fs::remove(root / "latest.tmp", ignored);
    if (fs::exists(final_dir, ignored) && !fs::exists(partial, ignored))
      fs::rename(final_dir, partial, ignored);  // the caller removes what it wrote
    if (fs::exists(replaced, ignored)) fs::rename(replaced, final_dir, ignored);
  };
  try {
    fs::rename(partial, final_dir, ec);
    if (ec) storage_error(partial.string(), ec.value());
    fsync_path(root);
    {
      std::ofstream latest(root / "latest.tmp");
      latest << name << "\n";
      latest.flush();
      if (!latest) storage_error((root / "latest.tmp").string(), errno != 0 ? errno : EIO);
    }
    fsync_path(root / "latest.tmp");
    fs::rename(root / "latest.tmp", root / "latest", ec);
    if (ec) storage_error((root / "latest").string(), ec.value());
  } catch (const StorageError&) {
    undo();
    throw;
  }
  fsync_path(root);
  fs::remove_all(replaced, ec);
  prune(root, name, keep);
}

void fsync_path(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) storage_error(p.string(), errno);
  // Some file systems cannot sync a directory (EINVAL): nothing is lost by going on.
  if (::fsync(fd) != 0 && errno != EINVAL) {
    const int err = errno;
    ::close(fd);
    storage_error(p.string(), err);
  }
  ::close(fd);
}

uint32_t file_crc32c(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<char> buf(1 << 20);
  uint32_t crc = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    crc = crc32c_extend(crc, std::string_view(buf.data(), static_cast<size_t>(in.gcount())));
  }
  return crc;
}

}  // namespace tmt::ckpt
