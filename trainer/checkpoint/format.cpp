#include "trainer/checkpoint/format.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <fstream>

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

json read_json_attr(hid_t file, const char* name, const fs::path& index) {
  const auto text = h5::read_string_attr(file, name);
  if (!text) input_error("{}: missing attribute {}", index.string(), name);
  try {
    return json::parse(*text);
  } catch (const json::exception&) {
    input_error("{}: attribute {} is not valid JSON", index.string(), name);
  }
}

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

}  // namespace tmt::ckpt
