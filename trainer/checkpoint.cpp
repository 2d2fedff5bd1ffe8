#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "kernels/base/check.h"
#include "kernels/base/rng.h"
#include "kernels/copy.h"
#include "trainer/crc32c.h"

namespace tmt {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* const kKinds[] = {"param", "exp_avg", "exp_avg_sq"};

// ---- HDF5 handles ---------------------------------------------------------------------------

// Owns one hid_t and closes it with its own close function.
class H5 {
 public:
  H5() = default;
  H5(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  H5(H5&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  H5& operator=(H5&& o) noexcept {
    std::swap(id_, o.id_);
    std::swap(close_, o.close_);
    return *this;
  }
  H5(const H5&) = delete;
  H5& operator=(const H5&) = delete;
  ~H5() {
    if (id_ >= 0 && close_ != nullptr) close_(id_);
  }
  hid_t id() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

// HDF5 prints its error stack by default; we report our own errors.
void quiet_hdf5() {
  static const bool once = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)once;
}

void h5_check(herr_t status, const std::string& what) { TMT_CHECK(status >= 0, "HDF5: {}", what); }

std::vector<hsize_t> dims_of(const Shape& s) {
  std::vector<hsize_t> d;
  for (int i = 0; i < s.rank(); ++i) d.push_back(static_cast<hsize_t>(s[i]));
  return d;
}

H5 link_props() {
  H5 lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.id(), 1);
  return lcpl;
}

void write_string_attr(hid_t obj, const char* name, const std::string& value) {
  H5 type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.id(), std::max<size_t>(value.size(), 1));
  H5 space(H5Screate(H5S_SCALAR), H5Sclose);
  H5 attr(H5Acreate2(obj, name, type.id(), space.id(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  h5_check(H5Awrite(attr.id(), type.id(), value.data()), fmt::format("attribute {}", name));
}

void write_int_attr(hid_t obj, const char* name, int64_t value) {
  H5 space(H5Screate(H5S_SCALAR), H5Sclose);
  H5 attr(H5Acreate2(obj, name, H5T_STD_I64LE, space.id(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  h5_check(H5Awrite(attr.id(), H5T_NATIVE_INT64, &value), fmt::format("attribute {}", name));
}

std::optional<std::string> read_string_attr(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) <= 0) return std::nullopt;
  H5 attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  H5 type(H5Aget_type(attr.id()), H5Tclose);
  if (H5Tget_class(type.id()) != H5T_STRING || H5Tis_variable_str(type.id()) > 0)
    return std::nullopt;
  std::string value(H5Tget_size(type.id()), '\0');
  if (H5Aread(attr.id(), type.id(), value.data()) < 0) return std::nullopt;
  value.erase(std::find(value.begin(), value.end(), '\0'), value.end());
  return value;
}

std::optional<int64_t> read_int_attr(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) <= 0) return std::nullopt;
  H5 attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  int64_t v = 0;
  if (H5Aread(attr.id(), H5T_NATIVE_INT64, &v) < 0) return std::nullopt;
  return v;
}

// ---- files ------------------------------------------------------------------------------------

void fsync_path(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
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

std::string step_name(int64_t step) { return fmt::format("step-{:07d}", step); }
std::string shard_name(int rank) { return fmt::format("rank-{:05d}.h5", rank); }

// The flat position of a parameter's block within its group (the moments are laid out alike).
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

// Whether this rank writes parameter p's block (see the header).
bool writes(const Param& p, ParallelEnv& env) {
  const uint64_t h = hash_name(p.spec.name);
  if (static_cast<uint64_t>(env.tp->rank() % p.spec.tp_replicas) !=
      h % static_cast<uint64_t>(p.spec.tp_replicas))
    return false;
  Communicator& replicas = p.spec.kind == ParamKind::kDense ? *env.dp : *env.edp;
  return static_cast<uint64_t>(replicas.rank()) == h % static_cast<uint64_t>(replicas.size());
}

Tensor block_of(const Tensor& flat, const Param& p, const ParamGroup& g) {
  Tensor t = flat;
  t.data = static_cast<std::byte*>(flat.data) +
           static_cast<size_t>(offset_in_group(p, g)) * dtype_size(flat.dtype);
  t.shape = p.spec.local_shape;
  return t;
}

void write_block(hid_t file, const std::string& path, const Tensor& t, const ParamSpec& spec) {
  TMT_CHECK(t.dtype == DType::kF32, "checkpoint: {} must be f32, is {}", path, t.str());
  std::vector<float> staging;  // a device block's copy on the host
  const void* values = t.data;
  if (t.device != Device::kCpu) {
    staging.resize(static_cast<size_t>(t.numel()));
    copy_to_host(Context{t.device, nullptr}, staging.data(), t);
    values = staging.data();
  }
  const auto dims = dims_of(spec.local_shape);
  H5 space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  H5 lcpl = link_props();
  H5 d(H5Dcreate2(file, path.c_str(), H5T_IEEE_F32LE, space.id(), lcpl.id(), H5P_DEFAULT,
                  H5P_DEFAULT),
       H5Dclose);
  h5_check(d.id(), "create " + path);
  h5_check(H5Dwrite(d.id(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values), path);
  const hsize_t n = dims.size();
  H5 aspace(H5Screate_simple(1, &n, nullptr), H5Sclose);
  H5 attr(H5Acreate2(d.id(), "offset", H5T_STD_I64LE, aspace.id(), H5P_DEFAULT, H5P_DEFAULT),
          H5Aclose);
  h5_check(H5Awrite(attr.id(), H5T_NATIVE_INT64, spec.offset.data()), path + " offset");
}

// The index: one virtual dataset per tensor and kind over the blocks the shards hold.
void write_index(const fs::path& dir, const std::vector<json>& blocks, const json& meta) {
  H5 file(H5Fcreate((dir / "index.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  h5_check(file.id(), "create " + (dir / "index.h5").string());
  // tensor name -> (global shape, its blocks)
  std::map<std::string, std::pair<std::vector<hsize_t>, std::vector<const json*>>> tensors;
  for (const json& b : blocks) {
    auto& t = tensors[b["name"].get<std::string>()];
    t.first = b["global"].get<std::vector<hsize_t>>();
    t.second.push_back(&b);
  }
  H5 lcpl = link_props();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const char* kind : kKinds) {
    for (const auto& [name, t] : tensors) {
      const auto& global = t.first;
      H5 space(H5Screate_simple(static_cast<int>(global.size()), global.data(), nullptr), H5Sclose);
      H5 dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
      H5Pset_fill_value(dcpl.id(), H5T_NATIVE_FLOAT, &nan);
      const std::string path = std::string(kind) + "/" + name;
      for (const json* b : t.second) {
        const auto offset = (*b)["offset"].get<std::vector<hsize_t>>();
        const auto shape = (*b)["shape"].get<std::vector<hsize_t>>();
        H5 src(H5Screate_simple(static_cast<int>(shape.size()), shape.data(), nullptr), H5Sclose);
        h5_check(H5Sselect_hyperslab(space.id(), H5S_SELECT_SET, offset.data(), nullptr,
                                     shape.data(), nullptr),
                 "select " + path);
        h5_check(H5Pset_virtual(dcpl.id(), space.id(), (*b)["file"].get<std::string>().c_str(),
                                path.c_str(), src.id()),
                 "map " + path);
      }
      H5Sselect_all(space.id());
      H5 d(H5Dcreate2(file.id(), path.c_str(), H5T_IEEE_F32LE, space.id(), lcpl.id(), dcpl.id(),
                      H5P_DEFAULT),
           H5Dclose);
      h5_check(d.id(), "create " + path);
    }
  }
  for (const char* key :
       {"step", "adam_steps", "skipped_in_a_row", "seed", "consumed_sequences", "format_version"}) {
    write_int_attr(file.id(), key, meta[key].get<int64_t>());
  }
  write_string_attr(file.id(), "tramontane_version", TMT_VERSION);
  write_string_attr(file.id(), "recipe", meta["recipe"].get<std::string>());
  write_string_attr(file.id(), "layout", meta["layout"].dump());
  write_string_attr(file.id(), "shards", meta["shards"].dump());
}

void remove_old(const fs::path& root, int64_t keep) {
  std::vector<fs::path> done;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("step-", 0) != 0) continue;
    if (n.size() > 8 && n.substr(n.size() - 8) == ".partial") continue;
    done.push_back(e.path());
  }
  std::sort(done.begin(), done.end());
  for (size_t i = 0; i + static_cast<size_t>(keep) < done.size(); ++i) fs::remove_all(done[i], ec);
}

// The model keys that decide the tensors' names and shapes, as text.
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
      {"model.moe", m.moe ? "present" : "absent"}};
  if (m.moe) {
    std::string layers;
    for (int64_t l = 0; l < m.n_layers; ++l) layers += m.is_moe_layer(l) ? 'M' : 'D';
    k.insert(k.end(), {{"model.moe.n_experts", std::to_string(m.moe->n_experts)},
                       {"model.moe.expert_ffn_hidden", std::to_string(m.moe->expert_ffn_hidden)},
                       {"model.moe.n_shared_experts", std::to_string(m.moe->n_shared_experts)},
                       {"model.moe.shared_expert_ffn_hidden",
                        std::to_string(m.moe->shared_expert_ffn_hidden)},
                       {"model.moe.first_dense_layers (MoE layers)", layers}});
  }
  return k;
}

std::string shape_str(const std::vector<hsize_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

H5 open_index(const fs::path& dir) {
  quiet_hdf5();
  const fs::path index = dir / "index.h5";
  if (!fs::exists(index)) {
    input_error("{}: not a complete checkpoint (no index.h5{})", dir.string(),
                fs::exists(dir) ? "" : "; the directory does not exist");
  }
  H5 file(H5Fopen(index.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.ok()) input_error("{}: not an HDF5 file, or damaged", index.string());
  const auto version = read_int_attr(file.id(), "format_version");
  if (!version)
    input_error("{}: no format_version attribute: not a tramontane checkpoint", index.string());
  if (*version != kCheckpointFormat) {
    input_error("{}: checkpoint format version {}, this tramontane reads version {}",
                index.string(), *version, kCheckpointFormat);
  }
  return file;
}

json read_json_attr(hid_t file, const char* name, const fs::path& index) {
  const auto text = read_string_attr(file, name);
  if (!text) input_error("{}: missing attribute {}", index.string(), name);
  try {
    return json::parse(*text);
  } catch (const json::exception&) {
    input_error("{}: attribute {} is not valid JSON", index.string(), name);
  }
}

std::vector<hsize_t> dataset_dims(hid_t d) {
  H5 space(H5Dget_space(d), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.id());
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 0)));
  H5Sget_simple_extent_dims(space.id(), dims.data(), nullptr);
  return dims;
}

// Reads the block of global tensor `path` that `spec` describes into t (f32, on any device).
void read_block(hid_t file, const std::string& path, const ParamSpec& spec, const Tensor& t) {
  H5 d(H5Dopen2(file, path.c_str(), H5P_DEFAULT), H5Dclose);
  TMT_CHECK(d.ok(), "checkpoint: no dataset {}", path);
  H5 space(H5Dget_space(d.id()), H5Sclose);
  const auto count = dims_of(spec.local_shape);
  std::vector<hsize_t> start(count.size());
  for (size_t i = 0; i < count.size(); ++i) start[i] = static_cast<hsize_t>(spec.offset[i]);
  h5_check(
      H5Sselect_hyperslab(space.id(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr),
      "select " + path);
  H5 mem(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose);
  std::vector<float> staging;  // a device block's values, read on the host first
  if (t.device != Device::kCpu) staging.resize(static_cast<size_t>(t.numel()));
  void* values = t.device == Device::kCpu ? t.data : staging.data();
  h5_check(H5Dread(d.id(), H5T_NATIVE_FLOAT, mem.id(), space.id(), H5P_DEFAULT, values),
           "read " + path);
  if (t.device != Device::kCpu) copy_from_host(Context{t.device, nullptr}, t, values);
}

// A shard the index lists: present, of the size and CRC-32C the index recorded.
void verify_shard(const fs::path& dir, const json& entry) {
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

}  // namespace

std::string save_checkpoint(const Recipe& r, ParallelEnv& env, const ParamStore& params,
                            Optimizer& optimizer, const TrainingState& state) {
  quiet_hdf5();
  const fs::path root = fs::path(r.run.dir) / "checkpoints";
  const std::string name = step_name(state.step);
  const fs::path partial = root / (name + ".partial");
  const int rank = env.world->rank();
  if (rank == 0) {
    std::error_code ec;
    fs::remove_all(partial, ec);
    fs::create_directories(partial, ec);
    TMT_CHECK(!ec, "cannot create {}: {}", partial.string(), ec.message());
  }
  env.world->barrier();

  // The moments whole, group by group (zero1 gathers them: collective, so every rank takes part).
  std::vector<std::vector<float>> m_buf(params.groups().size()), v_buf(m_buf.size());
  std::vector<std::pair<Tensor, Tensor>> moments;
  for (size_t g = 0; g < m_buf.size(); ++g)
    moments.push_back(optimizer.whole_moments(g, m_buf[g], v_buf[g]));

  json mine = json::object();
  mine["blocks"] = json::array();
  std::vector<const Param*> to_write;
  for (const Param& p : params.all()) {
    if (writes(p, env)) to_write.push_back(&p);
  }
  if (!to_write.empty()) {
    const std::string file_name = shard_name(rank);
    const fs::path path = partial / file_name;
    {
      H5 file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
      h5_check(file.id(), "create " + path.string());
      for (const Param* p : to_write) {
        const size_t g = group_of(*p, params);
        const ParamGroup& pg = params.groups()[g];
        const auto& [mg, vg] = moments[g];
        write_block(file.id(), "param/" + p->spec.name, p->value, p->spec);
        write_block(file.id(), "exp_avg/" + p->spec.name, block_of(mg, *p, pg), p->spec);
        write_block(file.id(), "exp_avg_sq/" + p->spec.name, block_of(vg, *p, pg), p->spec);
        json b;
        b["name"] = p->spec.name;
        b["file"] = file_name;
        b["global"] = dims_of(p->spec.global_shape);
        b["shape"] = dims_of(p->spec.local_shape);
        b["offset"] = std::vector<int64_t>(p->spec.offset.begin(),
                                           p->spec.offset.begin() + p->spec.global_shape.rank());
        mine["blocks"].push_back(b);
      }
      H5Fflush(file.id(), H5F_SCOPE_GLOBAL);
    }
    fsync_path(path);
    mine["shard"] = {{"file", file_name},
                     {"bytes", static_cast<int64_t>(fs::file_size(path))},
                     {"crc32c", file_crc32c(path)}};
  }
  const std::vector<std::string> all = all_gather_strings(*env.world, mine.dump());

  if (rank == 0) {
    // Fault injection for the crash tests: die with the shards written and the index not.
    if (const char* f = std::getenv("TMT_FAULT_KILL_IN_SAVE");
        f != nullptr && std::atoll(f) == state.step) {
      std::raise(SIGKILL);
    }
    std::vector<json> blocks;
    json shards = json::array();
    for (const std::string& s : all) {
      const json j = json::parse(s);
      for (const json& b : j["blocks"]) blocks.push_back(b);
      if (j.contains("shard")) shards.push_back(j["shard"]);
    }
    json meta;
    meta["step"] = state.step;
    meta["adam_steps"] = state.adam_steps;
    meta["skipped_in_a_row"] = state.skipped_in_a_row;
    meta["seed"] = static_cast<int64_t>(r.train.seed);
    meta["consumed_sequences"] = state.step * r.train.global_batch;
    meta["format_version"] = kCheckpointFormat;
    meta["recipe"] = to_yaml(r);
    meta["layout"] = {{"world", env.world->size()}, {"tp", r.parallel.tp},
                      {"dp", r.parallel.dp},        {"pp", r.parallel.pp},
                      {"etp", r.parallel.etp},      {"ep", r.parallel.ep},
                      {"edp", r.parallel.edp},      {"zero1", r.parallel.zero1}};
    meta["shards"] = shards;
    write_index(partial, blocks, meta);
    fsync_path(partial / "index.h5");
    fsync_path(partial);
    const fs::path final_dir = root / name;
    std::error_code ec;
    fs::remove_all(final_dir, ec);  // an older save of the same step (a rerun after a crash)
    fs::rename(partial, final_dir, ec);
    TMT_CHECK(!ec, "cannot rename {}: {}", partial.string(), ec.message());
    fsync_path(root);
    {
      std::ofstream latest(root / "latest.tmp");
      latest << name << "\n";
    }
    fsync_path(root / "latest.tmp");
    fs::rename(root / "latest.tmp", root / "latest", ec);
    TMT_CHECK(!ec, "cannot update {}: {}", (root / "latest").string(), ec.message());
    fsync_path(root);
    remove_old(root, std::max<int64_t>(r.checkpoint.keep, 1));
  }
  env.world->barrier();
  return (root / name).string();
}

std::string latest_checkpoint(const std::string& run_dir) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  std::ifstream in(root / "latest");
  std::string name;
  if (!(in >> name)) return "";
  return (root / name).string();
}

void check_checkpoint(const std::string& dir_name, const Recipe& r, const ParamStore& params,
                      int rank, int world) {
  const fs::path dir(dir_name);
  const fs::path index = dir / "index.h5";
  H5 file = open_index(dir);
  // The model the checkpoint was written for.
  const auto recipe_text = read_string_attr(file.id(), "recipe");
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
  const json shards = read_json_attr(file.id(), "shards", index);
  for (size_t i = static_cast<size_t>(rank); i < shards.size(); i += static_cast<size_t>(world)) {
    verify_shard(dir, shards[i]);
  }
  // The tensors this rank reads.
  for (const Param& p : params.all()) {
    for (const char* kind : kKinds) {
      const std::string path = std::string(kind) + "/" + p.spec.name;
      if (H5Lexists(file.id(), kind, H5P_DEFAULT) <= 0 ||
          H5Lexists(file.id(), path.c_str(), H5P_DEFAULT) <= 0) {
        input_error("{}: no tensor {} (the recipe's model has it)", index.string(), path);
      }
      H5 d(H5Dopen2(file.id(), path.c_str(), H5P_DEFAULT), H5Dclose);
      const auto dims = dataset_dims(d.id());
      if (dims != dims_of(p.spec.global_shape)) {
        input_error("{}: {} is {} in the checkpoint, {} in the recipe's model", index.string(),
                    path, shape_str(dims), shape_str(dims_of(p.spec.global_shape)));
      }
    }
  }
}

TrainingState load_checkpoint(const std::string& dir, ParamStore& params, Optimizer& optimizer) {
  H5 file = open_index(dir);
  TrainingState state;
  state.step = read_int_attr(file.id(), "step").value_or(0);
  state.adam_steps = read_int_attr(file.id(), "adam_steps").value_or(0);
  state.skipped_in_a_row = read_int_attr(file.id(), "skipped_in_a_row").value_or(0);
  for (size_t g = 0; g < params.groups().size(); ++g) {
    const ParamGroup& pg = params.groups()[g];
    const auto n = pg.values.numel();
    std::vector<float> m(static_cast<size_t>(n), 0.0f), v(m.size(), 0.0f);
    const Tensor mg{m.data(), DType::kF32, Device::kCpu, Shape{n}};
    const Tensor vg{v.data(), DType::kF32, Device::kCpu, Shape{n}};
    for (const Param& p : params.all()) {
      if (p.spec.kind != pg.kind || p.spec.decay != pg.decay ||
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

void print_checkpoint(const std::string& dir_name, bool tensors_only) {
  const fs::path dir(dir_name);
  const fs::path index = dir / "index.h5";
  H5 file = open_index(dir);
  const json shards = read_json_attr(file.id(), "shards", index);
  for (const json& shard : shards) verify_shard(dir, shard);
  if (!tensors_only) {
    fmt::print("checkpoint {}\n", dir.string());
    fmt::print("  format version {}, written by tramontane {}\n", kCheckpointFormat,
               read_string_attr(file.id(), "tramontane_version").value_or("?"));
    fmt::print("  step {} (AdamW step {}), {} sequences consumed, seed {}\n",
               read_int_attr(file.id(), "step").value_or(-1),
               read_int_attr(file.id(), "adam_steps").value_or(-1),
               read_int_attr(file.id(), "consumed_sequences").value_or(-1),
               read_int_attr(file.id(), "seed").value_or(-1));
    const json layout = read_json_attr(file.id(), "layout", index);
    fmt::print("  written at: {} ranks, tp {} x dp {} x pp {}, etp {} x ep {} x edp {}{}\n",
               layout["world"].get<int64_t>(), layout["tp"].get<int64_t>(),
               layout["dp"].get<int64_t>(), layout["pp"].get<int64_t>(),
               layout["etp"].get<int64_t>(), layout["ep"].get<int64_t>(),
               layout["edp"].get<int64_t>(), layout["zero1"].get<bool>() ? ", zero1" : "");
    fmt::print("  {} shard file(s), checksums verified\n", shards.size());
    fmt::print("tensors (name, global shape, dtype, crc32c of the f32 little-endian bytes):\n");
  }
  for (const char* kind : kKinds) {
    H5 group(H5Gopen2(file.id(), kind, H5P_DEFAULT), H5Gclose);
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
      H5 d(H5Dopen2(file.id(), path.c_str(), H5P_DEFAULT), H5Dclose);
      const auto dims = dataset_dims(d.id());
      hsize_t count = 1;
      for (hsize_t x : dims) count *= x;
      std::vector<float> values(count);
      h5_check(H5Dread(d.id(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()),
               "read " + path);
      const uint32_t crc = crc32c(std::string_view(reinterpret_cast<const char*>(values.data()),
                                                   values.size() * sizeof(float)));
      fmt::print("  {:<40} {:<18} f32 {:08x}\n", path, shape_str(dims), crc);
    }
  }
  if (!tensors_only) {
    fmt::print("recipe:\n{}", read_string_attr(file.id(), "recipe").value_or(""));
  }
}

}  // namespace tmt
