// Safetensors files that are malformed in the ways fuzz/safetensors_fuzz.cpp (and reading its
// target) found: each read, mapped and whole, ends in an InputError naming the file and the tensor,
// never undefined behaviour; an empty tensor reads as one.
#include "trainer/interop/safetensors.h"

#include <gtest/gtest.h>

#include <fstream>
#include <functional>

#include "kernels/base/check.h"
#include "tests/support/input_error.h"
#include "tests/support/temp_dir.h"

namespace tmt {
namespace {

using test::error_of;

// A file of the 8-byte length, the header and `data`.
std::string write(const test::TempDir& dir, const std::string& header, size_t data) {
  const std::string path = dir.file("t.safetensors");
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << std::string(data, '\x01');
  return path;
}

TEST(Safetensors, AnEmptyTensorReadsWhole) {
  test::TempDir dir;
  const std::string path =
      write(dir,
            R"({"e": {"dtype": "F32", "shape": [0, 5], "data_offsets": [0, 0]},)"
            R"( "s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}})",
            4);
  const SafetensorsFile f = SafetensorsFile::read(path);
  ASSERT_EQ(f.tensors.size(), 2u);
  ASSERT_NE(f.find("e"), nullptr);
  EXPECT_EQ(f.find("e")->numel(), 0);
  EXPECT_TRUE(f.find("e")->bytes.empty());
  EXPECT_EQ(f.find("s")->bytes.size(), 4u);
}

TEST(Safetensors, AShapeOfMoreThan2To63ElementsIsNamed) {
  test::TempDir dir;
  for (const char* shape : {"[1099511627776, 1099511627776]", "[4611686018427387904, 4]"}) {
    const std::string path = write(dir,
                                   std::string(R"({"a": {"dtype": "F32", "shape": )") + shape +
                                       R"(, "data_offsets": [0, 0]}})",
                                   0);
    for (const auto& read : std::vector<std::function<void()>>{
             [&] { MappedSafetensors m(path); }, [&] { SafetensorsFile::read(path); }}) {
      const std::string e = error_of(read);
      EXPECT_NE(e.find(path + ": tensor a: its shape "), std::string::npos) << shape << ": " << e;
      EXPECT_NE(e.find("more than 2^6"), std::string::npos) << shape << ": " << e;
    }
  }
}

TEST(Safetensors, DataOffsetsNearTwoTo64AreRefusedNotWrapped) {
  // begin and end 8 bytes apart (a [2] F32's size) just below 2^64: 8 + header + end wraps.
  test::TempDir dir;
  const std::string path = write(dir,
                                 R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": )"
                                 R"([18446744073709551600, 18446744073709551608]}})",
                                 16);
  const std::string e = error_of([&] { MappedSafetensors m(path); });
  EXPECT_NE(e.find(path + ": tensor a: its data ends past the end of the file"), std::string::npos)
      << e;
}

}  // namespace
}  // namespace tmt
