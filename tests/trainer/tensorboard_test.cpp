// TensorBoard event files: the CRC-32C check value, and a written file read back record by record —
// lengths and masked CRCs verified, the protocol buffers decoded to the tags, steps and values
// written.
#include "trainer/metrics/tensorboard.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <map>

#include "tests/support/temp_dir.h"

namespace tmt {
namespace {

template <class T>
T read_at(const std::string& s, size_t at) {
  T v;
  std::memcpy(&v, s.data() + at, sizeof(T));
  return v;
}

// The fields of one protobuf message: number -> raw values (varints as numbers, the rest as bytes).
struct Fields {
  std::multimap<int, uint64_t> ints;
  std::multimap<int, std::string> bytes;
};

Fields decode(const std::string& m) {
  Fields f;
  size_t i = 0;
  auto varint = [&] {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      const auto b = static_cast<uint8_t>(m.at(i++));
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
  };
  while (i < m.size()) {
    const uint64_t key = varint();
    const int field = static_cast<int>(key >> 3);
    switch (key & 7) {
      case 0:
        f.ints.emplace(field, varint());
        break;
      case 1:
        f.bytes.emplace(field, m.substr(i, 8)), i += 8;
        break;
      case 5:
        f.bytes.emplace(field, m.substr(i, 4)), i += 4;
        break;
      case 2: {
        const auto n = static_cast<size_t>(varint());
        f.bytes.emplace(field, m.substr(i, n));
        i += n;
        break;
      }
      default:
        ADD_FAILURE() << "wire type " << (key & 7);
    }
  }
  return f;
}

TEST(TensorBoard, Crc32cCheckValue) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);  // the standard CRC-32C check value
  EXPECT_EQ(crc32c(""), 0u);
  // 32 bytes of zeros and of 0xff: the check values of RFC 3720 (iSCSI), B.4
  EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  // extending in pieces of every length equals one pass (the 8-byte path and its tail agree)
  std::string text;
  for (int i = 0; i < 301; ++i) text.push_back(static_cast<char>(i * 37 + 11));
  for (size_t cut : {0u, 1u, 7u, 8u, 9u, 150u, 301u}) {
    const std::string_view v(text);
    EXPECT_EQ(crc32c_extend(crc32c(v.substr(0, cut)), v.substr(cut)), crc32c(v)) << cut;
  }
}

TEST(TensorBoard, EventFileReadsBack) {
  test::TempDir dir;
  std::string path;
  {
    TensorBoardWriter w(dir.file("tb"));
    w.scalar("train/loss", 1, 5.5);
    w.scalar("val/loss", 20, 1.25);
    path = w.path();
  }
  EXPECT_NE(path.find("events.out.tfevents."), std::string::npos);
  std::ifstream in(path, std::ios::binary);
  const std::string file{std::istreambuf_iterator<char>(in), {}};
  std::vector<std::string> payloads;
  for (size_t at = 0; at < file.size();) {
    const auto len = read_at<uint64_t>(file, at);
    ASSERT_EQ(read_at<uint32_t>(file, at + 8), masked_crc32c(file.substr(at, 8)));
    const std::string payload = file.substr(at + 12, len);
    ASSERT_EQ(read_at<uint32_t>(file, at + 12 + len), masked_crc32c(payload));
    payloads.push_back(payload);
    at += 12 + len + 4;
  }
  ASSERT_EQ(payloads.size(), 3u);
  EXPECT_EQ(decode(payloads[0]).bytes.find(3)->second, "brain.Event:2");
  const std::pair<std::string, std::pair<int64_t, float>> want[] = {{"train/loss", {1, 5.5f}},
                                                                    {"val/loss", {20, 1.25f}}};
  for (int i = 0; i < 2; ++i) {
    const Fields event = decode(payloads[static_cast<size_t>(i) + 1]);
    EXPECT_EQ(static_cast<int64_t>(event.ints.find(2)->second), want[i].second.first);
    const Fields summary = decode(event.bytes.find(5)->second);
    const Fields value = decode(summary.bytes.find(1)->second);
    EXPECT_EQ(value.bytes.find(1)->second, want[i].first);
    EXPECT_EQ(read_at<float>(value.bytes.find(2)->second, 0), want[i].second.second);
  }
}

}  // namespace
}  // namespace tmt
