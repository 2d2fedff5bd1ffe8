// The checkpoint index and shard readers (trainer/checkpoint/format.h), through `tramontane
// inspect` (print_checkpoint: open_index, the shards attribute and verify_shard, the layout
// attribute, every dataset of /param, /exp_avg, /exp_avg_sq read whole).
//
// The input describes an index that this target writes with HDF5, so that the fuzzer works on what
// our code reads rather than on HDF5's own parser (checkpoint_bytes_fuzz.cpp mutates the bytes):
//   byte 0  flags: 1 weights_only attribute, 2 its value 1, 4 moments groups, 8 tensors only,
//           16 "step" an array of 4 integers, 32 format_version a string, 64 a group where
//           /param/w's dataset would be, 128 no format_version
//   byte 1  /param/w's rank (mod 4); bytes 2..4 its dimensions
//   then, separated by NUL bytes: the shards attribute (JSON), the layout attribute (JSON), the
//   recipe attribute, and the bytes of the shard file rank-00000.h5
// stdout (what inspect prints) is best closed with libFuzzer's -close_fd_mask=1.
#include <hdf5.h>

#include "fuzz/fuzz_support.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/format.h"
#include "trainer/checkpoint/hdf5.h"

using namespace tmt;
namespace fs = std::filesystem;

namespace {

void write_attrs_and_tensors(const fs::path& index, const uint8_t* data, size_t size,
                             const std::vector<std::string>& fields) {
  const uint8_t flags = data[0];
  h5::Handle file(H5Fcreate(index.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  if (!file.ok()) std::abort();
  if ((flags & 128) == 0) {
    if (flags & 32) {
      h5::write_string_attr(file.id(), "format_version", "1");
    } else {
      h5::write_int_attr(file.id(), "format_version", ckpt::kFormatVersion);
    }
  }
  if (flags & 1) h5::write_int_attr(file.id(), "weights_only", (flags & 2) ? 1 : 0);
  if (flags & 16) {
    const hsize_t n = 4;
    const int64_t values[4] = {7, 8, 9, 10};
    h5::Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
    h5::Handle attr(
        H5Acreate2(file.id(), "step", H5T_STD_I64LE, space.id(), H5P_DEFAULT, H5P_DEFAULT),
        H5Aclose);
    H5Awrite(attr.id(), H5T_NATIVE_INT64, values);
  } else {
    h5::write_int_attr(file.id(), "step", 3);
  }
  const char* names[] = {"shards", "layout", "recipe"};
  for (size_t i = 0; i < 3 && i < fields.size(); ++i)
    h5::write_string_attr(file.id(), names[i], fields[i]);
  h5::Handle lcpl = h5::link_props();
  for (const char* kind : ckpt::kKinds) {
    if (std::string(kind) != "param" && (flags & 4) == 0) continue;
    const std::string path = std::string(kind) + "/w";
    if (flags & 64) {
      h5::Handle g(H5Gcreate2(file.id(), path.c_str(), lcpl.id(), H5P_DEFAULT, H5P_DEFAULT),
                   H5Gclose);
      continue;
    }
    const int rank = size > 1 ? data[1] % 4 : 0;
    hsize_t dims[3] = {};
    for (int d = 0; d < rank; ++d) dims[d] = size > static_cast<size_t>(2 + d) ? data[2 + d] : 1;
    h5::Handle space(rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, nullptr),
                     H5Sclose);
    h5::Handle d(H5Dcreate2(file.id(), path.c_str(), H5T_IEEE_F32LE, space.id(), lcpl.id(),
                            H5P_DEFAULT, H5P_DEFAULT),
                 H5Dclose);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  h5::quiet_hdf5();
  const fs::path dir = fuzz::scratch_dir() / "step-0000003";
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  const fs::path index = dir / "index.h5";
  const size_t header = std::min<size_t>(size, 5);
  const std::vector<std::string> fields =
      fuzz::split(fuzz::text_of(data + header, size - header), '\0');
  write_attrs_and_tensors(index, data, header, fields);
  if (fields.size() > 3) fuzz::write_file("step-0000003/rank-00000.h5", fields[3]);
  const bool tensors_only = (data[0] & 8) != 0;
  fuzz::expect_input_error([&] { print_checkpoint(dir.string(), tensors_only); });
  return 0;
}
