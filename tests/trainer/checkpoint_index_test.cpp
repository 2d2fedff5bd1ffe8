// A checkpoint's index with damaged attributes (the shards and layout JSON that inspect, load and
// export read) is refused with an InputError naming the index and the attribute, never an assertion
// or a JSON exception. The inputs are what fuzz/checkpoint_fuzz.cpp found, made small.
#include <gtest/gtest.h>

#include <functional>

#include "kernels/base/check.h"
#include "tests/support/input_error.h"
#include "tests/support/run.h"
#include "tests/support/temp_dir.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/format.h"
#include "trainer/checkpoint/hdf5.h"

namespace tmt {
namespace {

using test::error_of;

const char* kLayout =
    R"({"world": 1, "tp": 1, "dp": 1, "pp": 1, "etp": 1, "ep": 1, "edp": 1, "zero1": false})";

// An index with format_version 1 and the given shards and layout attributes, nothing else.
void write_index(const test::TempDir& dir, const std::string& shards, const std::string& layout) {
  h5::quiet_hdf5();
  h5::Handle file(H5Fcreate(dir.file("index.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
                  H5Fclose);
  ASSERT_TRUE(file.ok());
  h5::write_int_attr(file.id(), "format_version", ckpt::kFormatVersion);
  h5::write_string_attr(file.id(), "shards", shards);
  h5::write_string_attr(file.id(), "layout", layout);
}

TEST(CheckpointIndex, ALayoutWithoutAKeyIsNamed) {
  test::TempDir dir;
  write_index(dir, "[]", R"({"world": 1, "tp": 1, "dp": 1, "pp": 1, "etp": 1, "ep": 1, "edp": 1})");
  const std::string e = error_of([&] { print_checkpoint(dir.path().string(), false); });
  EXPECT_NE(e.find(dir.file("index.h5") + ": attribute layout: zero1 is not true or false"),
            std::string::npos)
      << e;
  write_index(dir, "[]",
              R"({"world": "1", "tp": 1, "dp": 1, "pp": 1, "etp": 1, "ep": 1, "zero1": true})");
  const std::string e2 = error_of([&] { print_checkpoint(dir.path().string(), false); });
  EXPECT_NE(e2.find("attribute layout: world is not an integer"), std::string::npos) << e2;
}

TEST(CheckpointIndex, AttributesOfTheWrongJsonTypeAreNamed) {
  test::TempDir dir;
  write_index(dir, "[]", "[1, 2]");
  const std::string e = error_of([&] { print_checkpoint(dir.path().string(), false); });
  EXPECT_NE(e.find(": attribute layout is not a JSON object"), std::string::npos) << e;
  write_index(dir, R"({"file": "rank-00000.h5"})", kLayout);
  const std::string e2 = error_of([&] { print_checkpoint(dir.path().string(), true); });
  EXPECT_NE(e2.find(": attribute shards is not a JSON array"), std::string::npos) << e2;
}

TEST(CheckpointIndex, MalformedShardEntriesAreNamed) {
  test::TempDir dir;
  for (const char* shards :
       {R"([{"file": "rank-00000.h5", "bytes": 4}])", R"([{"bytes": 4, "crc32c": 1}])",
        R"([{"file": 3, "bytes": 4, "crc32c": 1}])", R"([{"file": "a", "bytes": 4, "crc32c": -1}])",
        R"([{"file": "../x.h5", "bytes": 4, "crc32c": 1}])", R"([[]])", R"([7])"}) {
    write_index(dir, shards, kLayout);
    const std::string e = error_of([&] { print_checkpoint(dir.path().string(), true); });
    EXPECT_NE(e.find(dir.file("index.h5") + ": attribute shards: "), std::string::npos)
        << shards << ": " << e;
    EXPECT_NE(e.find("is not an entry"), std::string::npos) << shards << ": " << e;
  }
}

// An index whose attributes are right and whose /param holds `make(param group)`.
void write_index_with_param(const test::TempDir& dir, const std::function<void(hid_t)>& make) {
  write_index(dir, "[]", kLayout);
  h5::Handle file(H5Fopen(dir.file("index.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
  h5::Handle group(H5Gcreate2(file.id(), "param", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  make(group.id());
}

TEST(CheckpointIndex, AttributesOfSeveralValuesAreNotReadIntoOne) {
  // H5Aread writes every element: an integer or string attribute of 4 values overran the one
  // value the readers hold. Now it reads as absent.
  test::TempDir dir;
  write_index(dir, "[]", kLayout);
  h5::Handle file(H5Fopen(dir.file("index.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
  const hsize_t n = 4;
  h5::Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  const int64_t values[4] = {7, 8, 9, 10};
  h5::Handle step(
      H5Acreate2(file.id(), "step", H5T_STD_I64LE, space.id(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  ASSERT_GE(H5Awrite(step.id(), H5T_NATIVE_INT64, values), 0);
  h5::Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.id(), 2);
  h5::Handle text(H5Acreate2(file.id(), "recipe", type.id(), space.id(), H5P_DEFAULT, H5P_DEFAULT),
                  H5Aclose);
  ASSERT_GE(H5Awrite(text.id(), type.id(), "abcdefgh"), 0);
  EXPECT_EQ(h5::read_int_attr(file.id(), "step"), std::nullopt);
  EXPECT_EQ(h5::read_string_attr(file.id(), "recipe"), std::nullopt);
  EXPECT_EQ(h5::read_int_attr(file.id(), "format_version"), ckpt::kFormatVersion);
}

TEST(CheckpointIndex, AGroupWhereATensorShouldBeIsNamed) {
  test::TempDir dir;
  write_index_with_param(dir, [](hid_t param) {
    h5::Handle g(H5Gcreate2(param, "w", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  });
  const std::string e = error_of([&] { print_checkpoint(dir.path().string(), true); });
  EXPECT_NE(e.find(dir.file("index.h5") + ": /param/w is not a dataset"), std::string::npos) << e;
}

TEST(CheckpointIndex, ATensorOfMoreElementsThanMemoryIsNamed) {
  // A chunked dataset stores nothing until written: any shape fits in a small file.
  test::TempDir dir;
  bool made = false;
  write_index_with_param(dir, [&](hid_t param) {
    const hsize_t dims[3] = {hsize_t{1} << 30, hsize_t{1} << 30, hsize_t{1} << 30},
                  chunk[3] = {1, 1, 1};
    h5::Handle space(H5Screate_simple(3, dims, nullptr), H5Sclose);
    h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    H5Pset_chunk(dcpl.id(), 3, chunk);
    h5::Handle d(
        H5Dcreate2(param, "w", H5T_IEEE_F32LE, space.id(), H5P_DEFAULT, dcpl.id(), H5P_DEFAULT),
        H5Dclose);
    made = d.ok();
  });
  if (!made) GTEST_SKIP() << "this HDF5 refuses a dataset of 2^90 elements";
  const std::string e = error_of([&] { print_checkpoint(dir.path().string(), true); });
  EXPECT_NE(e.find(": /param/w: its shape [1073741824, 1073741824, 1073741824] has more elements"),
            std::string::npos)
      << e;
}

TEST(CheckpointIndex, AMemberWhoseNameCannotBeReadIsNamed) {
  // tests/fixtures/fuzz/damaged_member_name: fuzz/checkpoint_bytes_fuzz.cpp's input, the real
  // checkpoint of its corpus with two bytes of index.h5 swapped (offsets 6295 and 6296), so that
  // H5Gget_objname_by_idx fails on a member of /param; its -1 made a string of SIZE_MAX characters.
  const std::string dir = test::source_path("tests/fixtures/fuzz/damaged_member_name");
  const std::string e = error_of([&] { print_checkpoint(dir, true); });
  EXPECT_NE(e.find(dir + "/index.h5: /param: the name of member 2 cannot be read"),
            std::string::npos)
      << e;
}

}  // namespace
}  // namespace tmt
