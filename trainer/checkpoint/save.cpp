// Saving a checkpoint (format.h): each rank writes its blocks into its shard, rank 0 the index,
// then the directory is renamed into place and `latest` updated.
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
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
  Communicator& replicas = p.spec.kind == ParamKind::kDense ? *env.dp_cp : *env.edp;
  return static_cast<uint64_t>(replicas.rank()) == h % static_cast<uint64_t>(replicas.size());
}

// At least the bytes of this rank's shard: its blocks (with their moments) and HDF5's metadata.
uint64_t shard_bytes(const std::vector<const Param*>& to_write) {
  uint64_t bytes = 64 << 10;
  for (const Param* p : to_write) {
    const uint64_t kinds = p->spec.trainable ? 3 : 1;
    bytes += kinds * (static_cast<uint64_t>(p->value.numel()) * sizeof(float) + (2 << 10));
  }
  return bytes;
}

// The first failure the ranks report ("" when none); collective.
std::string first_failure(Communicator& world, const std::string& mine) {
  for (const std::string& s : all_gather_strings(world, mine)) {
    if (!s.empty()) return s;
  }
  return "";
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
  TMT_H5_WRITE(d.id(), h5::file_name(file), "create {}", path);
  TMT_H5_WRITE(H5Dwrite(d.id(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values),
               h5::file_name(file), "write {}", path);
  const hsize_t n = dims.size();
  Handle aspace(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle attr(H5Acreate2(d.id(), "offset", H5T_STD_I64LE, aspace.id(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose);
  TMT_H5_WRITE(attr.id(), h5::file_name(file), "{} offset", path);
  TMT_H5_WRITE(H5Awrite(attr.id(), H5T_NATIVE_INT64, spec.offset.data()), h5::file_name(file),
               "{} offset", path);
}

}  // namespace

std::string save_checkpoint(const Recipe& r, ParallelEnv& env, const ParamStore& params,
                            Optimizer& optimizer, const TrainingState& state) {
  h5::quiet_hdf5();
  const fs::path root = fs::path(r.run.dir) / "checkpoints";
  const std::string name = step_name(state.step);
  const fs::path partial = root / (name + ".partial");
  const int rank = env.world->rank();
  const auto fail = [&](const std::string& why) {
    return StorageError(fmt::format("checkpoint {} not written: {}", name, why));
  };
  std::string failure;
  if (rank == 0) {
    // Leftovers of saves that a kill interrupted go first.
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root, ec)) {
      if (e.path().extension() == ".partial") fs::remove_all(e.path(), ec);
    }
    ec.clear();
    fs::create_directories(partial, ec);
    if (ec) failure = fmt::format("{}: {}", partial.string(), ec.message());
  }
  failure = first_failure(*env.world, failure);
  if (!failure.empty()) throw fail(failure);

  // The moments whole, group by group (zero1 gathers them: collective, so every rank takes part).
  std::vector<std::vector<float>> m_buf(params.groups().size()), v_buf(m_buf.size());
  std::vector<std::pair<Tensor, Tensor>> moments;
  for (size_t g = 0; g < m_buf.size(); ++g)
    moments.push_back(optimizer.whole_moments(g, m_buf[g], v_buf[g]));

  std::vector<const Param*> to_write;
  for (const Param& p : params.all()) {
    if (writes(p, env)) to_write.push_back(&p);
  }
  json mine = json::object();
  mine["blocks"] = json::array();
  try {
    const std::string file_name = shard_name(rank);
    const fs::path path = partial / file_name;
    if (!to_write.empty()) {
      const uint64_t reserved = shard_bytes(to_write);
      h5::write_file(path.string(), reserved, [&](hid_t file) {
        for (const Param* p : to_write) {
          write_block(file, "param/" + p->spec.name, p->value, p->spec);
          if (p->spec.trainable) {
            const size_t g = group_of(*p, params);
            const ParamGroup& pg = params.groups()[g];
            const auto& [mg, vg] = moments[g];
            write_block(file, "exp_avg/" + p->spec.name, block_of(mg, *p, pg), p->spec);
            write_block(file, "exp_avg_sq/" + p->spec.name, block_of(vg, *p, pg), p->spec);
          }
          mine["blocks"].push_back(
              {{"name", p->spec.name},
               {"moments", p->spec.trainable},
               {"global", h5::dims_of(p->spec.global_shape)},
               {"shape", h5::dims_of(p->spec.local_shape)},
               {"offset",
                std::vector<int64_t>(p->spec.offset.begin(),
                                     p->spec.offset.begin() + p->spec.global_shape.rank())}});
        }
      });
      mine["shard"] = shard_entry(partial, file_name);
    }
    // Fault injection for the storage tests: the last rank's write fails as on a full disk.
    if (const char* f = std::getenv("TMT_FAULT_ENOSPC_IN_SAVE");
        f != nullptr && std::atoll(f) == state.step && rank == env.world->size() - 1) {
      storage_error(path.string(), ENOSPC);
    }
  } catch (const StorageError& e) {
    mine["error"] = e.what();
  }
  // Fault injection for the watchdog's tests: TMT_FAULT_STOP_IN_SAVE=STEP:RANK stops that rank
  // (SIGSTOP) in the save of that step, its shard written and the others waiting for it.
  if (const char* f = std::getenv("TMT_FAULT_STOP_IN_SAVE")) {
    long long at = -1, who = -1;
    if (std::sscanf(f, "%lld:%lld", &at, &who) == 2 && at == state.step && who == rank)
      std::raise(SIGSTOP);
  }
  const std::vector<std::string> all = all_gather_strings(*env.world, mine.dump());
  std::vector<json> parts;
  for (const std::string& text : all) {
    parts.push_back(json::parse(text));
    if (failure.empty() && parts.back().contains("error"))
      failure = parts.back()["error"].get<std::string>();
  }

  // Rank 0 publishes only a checkpoint that every rank wrote.
  if (rank == 0 && failure.empty()) {
    // Fault injection for the crash tests: die with the shards written and the index not.
    if (const char* f = std::getenv("TMT_FAULT_KILL_IN_SAVE");
        f != nullptr && std::atoll(f) == state.step) {
      std::raise(SIGKILL);
    }
    std::vector<Block> blocks;
    IndexMeta meta;
    meta.shards = json::array();
    for (size_t i = 0; i < parts.size(); ++i) {
      for (const json& b : parts[i]["blocks"]) {
        blocks.push_back({b["name"].get<std::string>(), shard_name(static_cast<int>(i)),
                          b["global"].get<std::vector<hsize_t>>(),
                          b["shape"].get<std::vector<hsize_t>>(),
                          b["offset"].get<std::vector<hsize_t>>(), b["moments"].get<bool>()});
      }
      if (parts[i].contains("shard")) meta.shards.push_back(parts[i]["shard"]);
    }
    meta.step = state.step;
    meta.adam_steps = state.adam_steps;
    meta.skipped_in_a_row = state.skipped_in_a_row;
    meta.seed = static_cast<int64_t>(r.train.seed);
    meta.consumed_sequences = state.step * r.train.global_batch;
    meta.recipe = to_yaml(r);
    meta.layout = {{"world", env.world->size()}, {"tp", r.parallel.tp},      {"dp", r.parallel.dp},
                   {"pp", r.parallel.pp},        {"etp", r.parallel.etp},    {"ep", r.parallel.ep},
                   {"edp", r.parallel.edp},      {"zero1", r.parallel.zero1}};
    try {
      write_index(partial, blocks, meta);
      publish(root, name, r.checkpoint.keep);
    } catch (const StorageError& e) {
      failure = e.what();
    }
  }
  // Every rank learns rank 0's outcome (the shards' failures it already knows).
  failure = first_failure(*env.world, failure);
  if (!failure.empty()) {
    if (rank == 0) {
      std::error_code ec;
      fs::remove_all(partial, ec);  // what the ranks wrote of this checkpoint
    }
    env.world->barrier();
    throw fail(failure);
  }
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
