// The shard dataset: the permutation is a bijection that changes per epoch, sequences are a pure
// function of their index, windows cross shard boundaries, and prepare's output decodes to its
// input.
#include "data/token_dataset.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "data/prepare.h"
#include "data/tokenizer.h"
#include "kernels/base/check.h"
#include "tests/support/temp_dir.h"

namespace tmt {
namespace {

TEST(IndexPermutation, IsABijectionAndDependsOnTheKey) {
  for (uint64_t n : {1u, 2u, 7u, 1000u, 4097u}) {
    const IndexPermutation a(n, 11), b(n, 12);
    std::set<uint64_t> seen;
    int same = 0;
    for (uint64_t i = 0; i < n; ++i) {
      seen.insert(a.apply(i));
      same += a.apply(i) == b.apply(i) ? 1 : 0;
    }
    EXPECT_EQ(seen.size(), n);
    EXPECT_EQ(*seen.rbegin(), n - 1);
    if (n >= 1000) {
      EXPECT_LT(same, static_cast<int>(n / 10)) << n;
    }
  }
}

TEST(TokenDataset, SequencesArePureAndCrossShards) {
  test::TempDir dir;
  std::filesystem::create_directories(dir.path() / "d");
  std::vector<uint32_t> a(50), b(31);
  for (uint32_t i = 0; i < 50; ++i) a[i] = i;
  for (uint32_t i = 0; i < 31; ++i) b[i] = 50 + i;
  write_shard(dir.file("d/shard-00000.bin"), a, 0);
  write_shard(dir.file("d/shard-00001.bin"), b, 0);
  const TokenDataset plain({dir.file("d")}, 128, 8, 3, TokenDataset::Order::kInOrder);
  EXPECT_EQ(plain.tokens(), 81);
  EXPECT_EQ(plain.windows(), 10);  // (81 - 1) / 8
  std::vector<int32_t> out(9);
  plain.sequence(6, out);  // window 6: tokens 48..56, across the boundary at 50
  for (int i = 0; i < 9; ++i) EXPECT_EQ(out[static_cast<size_t>(i)], 48 + i);
  plain.sequence(16, out);  // epoch 1, identity order: window 6 again
  EXPECT_EQ(out[0], 48);

  const TokenDataset shuffled({dir.file("d")}, 128, 8, 3, TokenDataset::Order::kShuffled);
  std::set<int32_t> starts;
  for (int64_t i = 0; i < 10; ++i) {
    shuffled.sequence(i, out);
    starts.insert(out[0]);
    std::vector<int32_t> again(9);
    shuffled.sequence(i, again);
    EXPECT_EQ(out, again);
  }
  EXPECT_EQ(starts.size(), 10u);  // every window once per epoch
  std::vector<int32_t> first_epoch, second_epoch;
  for (int64_t i = 0; i < 10; ++i) {
    shuffled.sequence(i, out);
    first_epoch.push_back(out[0]);
    shuffled.sequence(i + 10, out);
    second_epoch.push_back(out[0]);
  }
  EXPECT_NE(first_epoch, second_epoch);
}

TEST(TokenDataset, TooLittleDataIsAnError) {
  test::TempDir dir;
  write_shard(dir.file("s.bin"), std::vector<uint32_t>{1, 2, 3}, 0);
  try {
    TokenDataset d({dir.file("s.bin")}, 10, 8, 0, TokenDataset::Order::kShuffled);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("3 tokens in all, fewer than data.seq_len + 1 = 9"),
              std::string::npos)
        << e.what();
  }
}

TEST(Prepare, TextBecomesTrainAndValidationShardsThatDecodeBack) {
  test::TempDir dir;
  const std::string one = "Tramontane: a cold north wind.\nIt blows over the sea.";
  const std::string two = "Second file, with UTF-8: vent du nord — über.";
  std::ofstream(dir.file("one.txt")) << one;
  std::ofstream(dir.file("two.txt")) << two;
  PrepareOptions o;
  o.inputs = {dir.file("one.txt"), dir.file("two.txt")};
  o.out_dir = dir.file("out");
  o.val_fraction = 0.2;
  o.shard_tokens = 16;  // several shards
  const PrepareSummary s = prepare_shards(o);
  const std::string all = one + "\n" + two;
  EXPECT_EQ(s.train_tokens + s.val_tokens, static_cast<int64_t>(all.size()));
  EXPECT_EQ(s.val_tokens, static_cast<int64_t>(static_cast<double>(all.size()) * 0.2));
  std::vector<uint32_t> tokens;
  for (const std::string split : {"train", "val"}) {
    for (const auto& f : expand_shard_paths({dir.file("out/" + split)})) {
      const Shard shard(f);
      EXPECT_EQ(shard.vocab_size(), 256u);
      for (int64_t i = 0; i < shard.size(); ++i) tokens.push_back(shard.token(i));
    }
  }
  EXPECT_EQ(make_tokenizer("bytes")->decode(tokens), all);
  // A second run with larger shards replaces the first run's shards instead of adding to them.
  o.shard_tokens = 1000;
  EXPECT_EQ(prepare_shards(o).files.size(), 2u);
  EXPECT_EQ(expand_shard_paths({dir.file("out/train")}).size(), 1u);
  o.inputs = {dir.file("missing.txt")};
  EXPECT_THROW(prepare_shards(o), InputError);
  o.tokenizer = "sentencepiece";
  EXPECT_THROW(prepare_shards(o), InputError);
}

}  // namespace
}  // namespace tmt
