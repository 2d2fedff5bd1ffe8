// Saving a checkpoint (format.h): each rank writes its blocks into its shard, rank 0 the index,
// then the directory is renamed into place and `latest` updated.
#include <fmt/format.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>

#include "kernels/base/rng.h"
#include "kernels/copy.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/format.h"

namespace tmt {
namespace fs = std::filesystem;
using nlohmann::json;
using namespace ckpt;
using h5::Handle;

namespace {

// Whether this rank writes parameter p's block (format.h).
bool writes(const Param& p, ParallelEnv& env) {
  const uint64_t h = hash_name(p.spec.name);
  if (static_cast<uint64_t>(env.tp->rank() % p.spec.tp_replicas) !=
      h % static_cast<uint64_t>(p.spec.tp_replicas))
    return false;
  Communicator& replicas = p.spec.kind == ParamKind::kDense ? *env.dp : *env.edp;
  return static_cast<uint64_t>(replicas.rank()) == h % static_cast<uint64_t>(replicas.size());
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
  const auto dims = h5::dims_of(spec.local_shape);
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Handle lcpl = h5::link_props();
  Handle d(H5Dcreate2(file, path.c_str(), H5T_IEEE_F32LE, space.id(), lcpl.id(), H5P_DEFAULT,
                      H5P_DEFAULT),
           H5Dclose);
  TMT_H5_CHECK(d.id(), "create {}", path);
  TMT_H5_CHECK(H5Dwrite(d.id(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values),
               "write {}", path);
  const hsize_t n = dims.size();
  Handle aspace(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle attr(H5Acreate2(d.id(), "offset", H5T_STD_I64LE, aspace.id(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose);
  TMT_H5_CHECK(H5Awrite(attr.id(), H5T_NATIVE_INT64, spec.offset.data()), "{} offset", path);
}

// The index: one virtual dataset per tensor and kind over the blocks the shards hold.
void write_index(const fs::path& dir, const std::vector<json>& blocks, const json& meta) {
  Handle file(H5Fcreate((dir / "index.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
              H5Fclose);
  TMT_H5_CHECK(file.id(), "create {}", (dir / "index.h5").string());
  // tensor name -> (global shape, its blocks)
  std::map<std::string, std::pair<std::vector<hsize_t>, std::vector<const json*>>> tensors;
  for (const json& b : blocks) {
    auto& t = tensors[b["name"].get<std::string>()];
    t.first = b["global"].get<std::vector<hsize_t>>();
    t.second.push_back(&b);
  }
  Handle lcpl = h5::link_props();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const char* kind : kKinds) {
    for (const auto& [name, t] : tensors) {
      const auto& global = t.first;
      Handle space(H5Screate_simple(static_cast<int>(global.size()), global.data(), nullptr),
                   H5Sclose);
      Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
      H5Pset_fill_value(dcpl.id(), H5T_NATIVE_FLOAT, &nan);
      const std::string path = std::string(kind) + "/" + name;
      for (const json* b : t.second) {
        const auto offset = (*b)["offset"].get<std::vector<hsize_t>>();
        const auto shape = (*b)["shape"].get<std::vector<hsize_t>>();
        Handle src(H5Screate_simple(static_cast<int>(shape.size()), shape.data(), nullptr),
                   H5Sclose);
        TMT_H5_CHECK(H5Sselect_hyperslab(space.id(), H5S_SELECT_SET, offset.data(), nullptr,
                                         shape.data(), nullptr),
                     "select {}", path);
        TMT_H5_CHECK(H5Pset_virtual(dcpl.id(), space.id(), (*b)["file"].get<std::string>().c_str(),
                                    path.c_str(), src.id()),
                     "map {}", path);
      }
      H5Sselect_all(space.id());
      Handle d(H5Dcreate2(file.id(), path.c_str(), H5T_IEEE_F32LE, space.id(), lcpl.id(), dcpl.id(),
                          H5P_DEFAULT),
               H5Dclose);
      TMT_H5_CHECK(d.id(), "create {}", path);
    }
  }
  for (const char* key :
       {"step", "adam_steps", "skipped_in_a_row", "seed", "consumed_sequences", "format_version"}) {
    h5::write_int_attr(file.id(), key, meta[key].get<int64_t>());
  }
  h5::write_string_attr(file.id(), "tramontane_version", TMT_VERSION);
  h5::write_string_attr(file.id(), "recipe", meta["recipe"].get<std::string>());
  h5::write_string_attr(file.id(), "layout", meta["layout"].dump());
  h5::write_string_attr(file.id(), "shards", meta["shards"].dump());
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

}  // namespace

std::string save_checkpoint(const Recipe& r, ParallelEnv& env, const ParamStore& params,
                            Optimizer& optimizer, const TrainingState& state) {
  h5::quiet_hdf5();
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
      Handle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
      TMT_H5_CHECK(file.id(), "create {}", path.string());
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
        b["global"] = h5::dims_of(p->spec.global_shape);
        b["shape"] = h5::dims_of(p->spec.local_shape);
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
    meta["format_version"] = kFormatVersion;
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

}  // namespace tmt
