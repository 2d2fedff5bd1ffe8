// Token shards: round trips at both widths, every kind of damaged file refused with its name, and a
// shard that changes under its reader (shrunk, replaced, its header rewritten) found.
#include "data/shard.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "kernels/base/check.h"
#include "tests/support/input_error.h"
#include "tests/support/temp_dir.h"

namespace tmt {
namespace {

using test::error_of;

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST(Shard, RoundTripsBothWidths) {
  test::TempDir dir;
  const std::vector<uint32_t> small = {0, 1, 255, 65535, 7};
  const std::vector<uint32_t> large = {0, 65536, 100000, 3};
  write_shard(dir.file("a.bin"), small, 65536);
  write_shard(dir.file("b.bin"), large, 200000);
  const Shard a(dir.file("a.bin")), b(dir.file("b.bin"));
  EXPECT_EQ(a.width(), 2u);
  EXPECT_EQ(b.width(), 4u);
  EXPECT_EQ(a.vocab_size(), 65536u);
  ASSERT_EQ(a.size(), 5);
  ASSERT_EQ(b.size(), 4);
  for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(a.token(i), small[static_cast<size_t>(i)]);
  std::vector<int32_t> out(3);
  b.read(1, out);
  EXPECT_EQ(out, (std::vector<int32_t>{65536, 100000, 3}));
  EXPECT_EQ(read_bytes(dir.file("a.bin")).size(), kShardHeaderBytes + 5 * 2);
  EXPECT_FALSE(std::filesystem::exists(dir.file("a.bin.tmp")));
}

TEST(Shard, DamagedFilesAreRefusedWithTheirName) {
  test::TempDir dir;
  write_shard(dir.file("good.bin"), std::vector<uint32_t>{1, 2, 3, 4}, 256);
  const std::string good = read_bytes(dir.file("good.bin"));
  struct Case {
    std::string name, bytes, expect;
  };
  std::string wrong_version = good;
  wrong_version[8] = 9;
  std::string wrong_width = good;
  wrong_width[12] = 3;
  const std::vector<Case> cases = {
      {"short.bin", good.substr(0, 20), "shorter than the 32-byte shard header"},
      {"magic.bin", "XXXXXXXX" + good.substr(8), "bad magic at byte 0"},
      {"version.bin", wrong_version, "unsupported shard format version 9 at byte 8"},
      {"width.bin", wrong_width, "token width 3 at byte 12"},
      {"truncated.bin", good.substr(0, good.size() - 1), "truncated"},
      {"trailing.bin", good + "xy", "trailing bytes"},
  };
  for (const Case& c : cases) {
    write_bytes(dir.file(c.name), c.bytes);
    const std::string e = error_of([&] { Shard s(dir.file(c.name)); });
    EXPECT_NE(e.find(dir.file(c.name) + ": "), std::string::npos) << e;
    EXPECT_NE(e.find(c.expect), std::string::npos) << c.name << ": " << e;
  }
  const std::string missing = error_of([&] { Shard s(dir.file("nope.bin")); });
  EXPECT_NE(missing.find(dir.file("nope.bin") + ": cannot open"), std::string::npos) << missing;
  const std::string directory = error_of([&] { Shard s(dir.path().string()); });
  EXPECT_NE(directory.find("not a regular file"), std::string::npos) << directory;
}

TEST(Shard, TokenAtOrAboveTheVocabularyIsReportedWithItsOffset) {
  test::TempDir dir;
  std::vector<uint32_t> tokens(40, 5);
  tokens[17] = 300;
  write_shard(dir.file("v.bin"), tokens, 0);
  const Shard s(dir.file("v.bin"));
  EXPECT_NO_THROW(s.check_vocab(301));
  const std::string e = error_of([&] { s.check_vocab(256); });
  EXPECT_NE(e.find(dir.file("v.bin") +
                   ": token 300 at index 17 (byte offset 66) is >= model.vocab_size 256"),
            std::string::npos)
      << e;
}

std::vector<uint32_t> random_tokens(size_t n, uint32_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint32_t> t(n);
  for (auto& x : t) x = static_cast<uint32_t>(rng() % vocab);
  return t;
}

TEST(Shard, UnchangedShardPassesTheCheck) {
  test::TempDir dir;
  write_shard(dir.file("s.bin"), random_tokens(5000, 1000, 1), 1000);
  const Shard s(dir.file("s.bin"));
  EXPECT_EQ(error_of([&] { s.check_unchanged(); }), "(no error)");
  std::vector<int32_t> out(100);
  s.read(4900, out);  // the last tokens, under the per-read check
  EXPECT_EQ(out[99], static_cast<int32_t>(s.token(4999)));
}

TEST(Shard, ShrunkReplacedOrRewrittenShardIsNamed) {
  test::TempDir dir;
  const std::string path = dir.file("s.bin");
  const auto tokens = random_tokens(5000, 1000, 2);
  const auto expect_changed = [&](const Shard& s, const std::string& how) {
    const std::string e = error_of([&] { s.check_unchanged(); });
    EXPECT_NE(e.find(path + ": the shard changed while the job was reading it (" + how),
              std::string::npos)
        << e;
  };
  {  // shrunk in place: 32 + 5000·2 bytes when opened
    write_shard(path, tokens, 1000);
    const Shard s(path);
    std::filesystem::resize_file(path, 4000);
    expect_changed(s, "10032 bytes when opened, 4000 now");
  }
  {  // replaced by another shard of the same size (write_shard renames a new file into place)
    write_shard(path, tokens, 1000);
    const Shard s(path);
    write_shard(path, random_tokens(5000, 1000, 3), 1000);
    expect_changed(s, "the path names another file now: replaced");
  }
  {  // its header rewritten in place, the size unchanged (the vocabulary field, byte 24)
    write_shard(path, tokens, 1000);
    const Shard s(path);
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(24);
    f.put('\x7f');
    f.close();
    expect_changed(s, "its header is not the one it had when opened");
  }
  {  // gone
    write_shard(path, tokens, 1000);
    const Shard s(path);
    std::filesystem::remove(path);
    expect_changed(s, "cannot open it now: No such file or directory");
  }
}

TEST(ShardDeathTest, ReadAfterTheShardShrankEndsWithExit2NamingIt) {
  test::TempDir dir;
  const std::string path = dir.file("s.bin");
  write_shard(path, random_tokens(5000, 1000, 4), 1000);
  const Shard s(path);
  std::filesystem::resize_file(path, 2000);
  // Tokens past the new end would be a SIGBUS in the mapping: the read refuses first.
  std::vector<int32_t> out(64);
  EXPECT_EXIT(s.read(4900, out), ::testing::ExitedWithCode(2),
              "error: .*s.bin: the shard changed while the job was reading it \\(10032 bytes when "
              "opened, 2000 now\\)");
}

}  // namespace
}  // namespace tmt
