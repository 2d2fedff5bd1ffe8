// Tokenizers against mistral_common: every document of the multilingual corpus
// (tests/fixtures/tokenizer/corpus.jsonl) encodes, token for token, to the ids that mistral_common
// 1.13.1 gives (scripts/reference/tokenizer_reference.py) for tekken_240911.json, tokenizer.model.v1
// and mistral_instruct_tokenizer_240323.model.v3; `prepare --format jsonl` writes exactly BOS + ids +
// EOS per document whatever the thread count; bad inputs are InputErrors naming the file (and line).
// The tokenizer files come from scripts/setup.sh (TMT_MISTRAL_DATA_DIR); without them the tests that
// need them skip. The BPE merge is also checked against a plain quadratic reference on random
// vocabularies (short and long pieces).
//
// timeout: 300
#include "data/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "data/byte_pair.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "kernels/base/check.h"
#include "tests/support/input_error.h"
#include "tests/support/run.h"
#include "tests/support/temp_dir.h"

namespace tmt {
namespace {

namespace fs = std::filesystem;

const char* const kTokenizers[] = {"tekken_240911.json", "tokenizer.model.v1",
                                   "mistral_instruct_tokenizer_240323.model.v3"};

std::string mistral_data_dir() {
  if (const char* env = std::getenv("TMT_MISTRAL_DATA_DIR")) return env;
  return TMT_MISTRAL_DATA_DIR;
}

#define SKIP_WITHOUT_MISTRAL_DATA()                                                      \
  if (!fs::exists(mistral_data_dir() + "/tekken_240911.json")) {                         \
    GTEST_SKIP() << "mistral-common's tokenizer files are not in " << mistral_data_dir() \
                 << " (run scripts/setup.sh --deps-only, or set TMT_MISTRAL_DATA_DIR)";  \
  }

std::string fixture(const std::string& name) {
  return test::source_path("tests/fixtures/tokenizer/" + name);
}

using test::error_of;

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// The corpus's documents (its non-empty lines' "text").
const std::vector<std::string>& corpus() {
  static const std::vector<std::string> docs = [] {
    std::vector<std::string> d;
    std::ifstream in(fixture("corpus.jsonl"));
    for (std::string line; std::getline(in, line);) {
      if (!line.empty()) d.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
    }
    return d;
  }();
  return docs;
}

// mistral_common's ids of every corpus document (BOS and EOS included) for one tokenizer.
std::vector<std::vector<uint32_t>> expected_ids(const std::string& tokenizer) {
  std::vector<std::vector<uint32_t>> ids;
  std::ifstream in(fixture(tokenizer + ".ids"));
  for (std::string line; std::getline(in, line);) {
    ids.push_back(nlohmann::json::parse(line).get<std::vector<uint32_t>>());
  }
  return ids;
}

const Tokenizer& tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> loaded;
  auto& t = loaded[name];
  if (!t) t = make_tokenizer(mistral_data_dir() + "/" + name);
  return *t;
}

std::vector<uint32_t> read_split(const fs::path& dir) {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  std::vector<uint32_t> tokens;
  for (const auto& f : files) {
    const Shard s(f);
    std::vector<int32_t> t(static_cast<size_t>(s.size()));
    s.read(0, t);
    tokens.insert(tokens.end(), t.begin(), t.end());
  }
  return tokens;
}

class MistralTokenizer : public testing::TestWithParam<const char*> {};

TEST_P(MistralTokenizer, EncodesEveryCorpusDocumentLikeMistralCommon) {
  SKIP_WITHOUT_MISTRAL_DATA();
  const Tokenizer& t = tokenizer(GetParam());
  const auto expected = expected_ids(GetParam());
  const auto& docs = corpus();
  ASSERT_EQ(expected.size(), docs.size()) << "fixture and corpus disagree: regenerate both";
  int bad = 0;
  for (size_t i = 0; i < docs.size(); ++i) {
    std::vector<uint32_t> ids = {*t.bos()};
    t.encode(docs[i], ids);
    ids.push_back(*t.eos());
    if (ids == expected[i]) continue;
    size_t at = 0;
    while (at < ids.size() && at < expected[i].size() && ids[at] == expected[i][at]) ++at;
    if (++bad <= 5) {
      ADD_FAILURE() << GetParam() << ": document " << i << " (" << docs[i].size()
                    << " bytes): first difference at token " << at << " of " << ids.size()
                    << " (expected " << expected[i].size() << "): got "
                    << (at < ids.size() ? std::to_string(ids[at]) : "end") << ", expected "
                    << (at < expected[i].size() ? std::to_string(expected[i][at]) : "end")
                    << "\ntext: " << nlohmann::json(docs[i]).dump();
    }
  }
  EXPECT_EQ(bad, 0) << bad << " of " << docs.size() << " documents differ";
}

TEST_P(MistralTokenizer, DecodesWhatItEncodes) {
  SKIP_WITHOUT_MISTRAL_DATA();
  const Tokenizer& t = tokenizer(GetParam());
  if (std::string(GetParam()).find(".model") != std::string::npos) {
    GTEST_SKIP() << "SentencePiece normalises whitespace: decode is not the identity";
  }
  for (const std::string& d : corpus()) {
    std::vector<uint32_t> ids;
    t.encode(d, ids);
    EXPECT_EQ(t.decode(ids), d);
  }
}

TEST_P(MistralTokenizer, PrepareWritesBosIdsEosWhateverTheThreadCount) {
  SKIP_WITHOUT_MISTRAL_DATA();
  std::vector<uint32_t> want;
  for (const auto& ids : expected_ids(GetParam())) want.insert(want.end(), ids.begin(), ids.end());
  test::TempDir dir;
  std::vector<std::string> outputs;
  for (int threads : {1, 3}) {
    PrepareOptions o;
    o.inputs = {fixture("corpus.jsonl")};
    o.out_dir = dir.file("t" + std::to_string(threads));
    o.tokenizer = mistral_data_dir() + "/" + GetParam();
    o.format = InputFormat::kJsonl;
    o.threads = threads;
    o.val_fraction = 0.1;
    o.shard_tokens = 5000;  // several shards
    const PrepareSummary s = prepare_shards(o);
    EXPECT_EQ(s.documents, static_cast<int64_t>(corpus().size()));
    EXPECT_EQ(s.train_tokens + s.val_tokens, static_cast<int64_t>(want.size()));
    std::vector<uint32_t> got = read_split(fs::path(o.out_dir) / "train");
    const std::vector<uint32_t> val = read_split(fs::path(o.out_dir) / "val");
    got.insert(got.end(), val.begin(), val.end());
    EXPECT_EQ(got, want) << threads << " threads";
    std::string all;
    for (const auto& f : s.files) all += read_file(f);
    outputs.push_back(all);
    EXPECT_FALSE(fs::exists(fs::path(o.out_dir) / ".prepare-tokens.tmp"));
  }
  EXPECT_TRUE(outputs[0] == outputs[1]) << "1 and 3 threads wrote different shards";
}

std::string param_name(const testing::TestParamInfo<const char*>& p) {
  std::string n = p.param;
  for (char& c : n) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(, MistralTokenizer, testing::ValuesIn(kTokenizers), param_name);

TEST(Tokenizer, VocabularyAndSpecialIdsComeFromTheFile) {
  SKIP_WITHOUT_MISTRAL_DATA();
  const std::map<std::string, uint32_t> vocab = {
      {"tekken_240911.json", 131072},
      {"tokenizer.model.v1", 32000},
      {"mistral_instruct_tokenizer_240323.model.v3", 32768}};
  for (const auto& [name, v] : vocab) {
    const Tokenizer& t = tokenizer(name);
    EXPECT_EQ(t.vocab_size(), v) << name;
    EXPECT_EQ(t.bos(), 1u) << name;
    EXPECT_EQ(t.eos(), 2u) << name;
  }
}

TEST(Tokenizer, TekkenShardsAreUint32AndRecordTheVocabulary) {
  SKIP_WITHOUT_MISTRAL_DATA();
  test::TempDir dir;
  PrepareOptions o;
  o.inputs = {fixture("corpus.jsonl")};
  o.out_dir = dir.path().string();
  o.tokenizer = mistral_data_dir() + "/tekken_240911.json";
  o.format = InputFormat::kJsonl;
  const PrepareSummary s = prepare_shards(o);
  for (const auto& f : s.files) {
    const Shard shard(f);
    EXPECT_EQ(shard.width(), 4u) << f;
    EXPECT_EQ(shard.vocab_size(), 131072u) << f;
    shard.check_vocab(131072);
  }
}

TEST(Tokenizer, BytesJoinsJsonlDocumentsWithANewline) {
  test::TempDir dir;
  write_file(dir.file("a.jsonl"), "{\"text\": \"ab\"}\n\n{\"body\": \"x\", \"text\": \"c\"}\r\n");
  write_file(dir.file("b.jsonl"), "{\"text\": \"de\"}");
  PrepareOptions o;
  o.inputs = {dir.file("a.jsonl"), dir.file("b.jsonl")};
  o.out_dir = dir.file("out");
  o.format = InputFormat::kJsonl;
  o.val_fraction = 0.2;
  const PrepareSummary s = prepare_shards(o);
  EXPECT_EQ(s.documents, 3);
  std::vector<uint32_t> got = read_split(dir.path() / "out" / "train");
  const auto val = read_split(dir.path() / "out" / "val");
  got.insert(got.end(), val.begin(), val.end());
  const std::string text = "ab\nc\nde";
  EXPECT_EQ(got, std::vector<uint32_t>(text.begin(), text.end()));
}

TEST(Tokenizer, BadJsonlLinesNameFileAndLine) {
  test::TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"text\": \"fine\"}\n{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n",
       ":3: not a JSON line"},
      {"{\"text\": \"fine\"}\n[1, 2]\n", ":2: not a JSON object"},
      {"\n{\"title\": \"no text\"}\n", ":2: no \"text\" key"},
      {"{\"text\": 42}\n", ":1: \"text\" is number, not a string"},
      // A number past double's range: nlohmann's out_of_range, not a parse_error (found by
      // fuzz/tokenizer's sibling target tekken, docs/FUZZING.md).
      {"{\"text\": \"a\", \"n\": 7.7E77777777}\n", ":1: not a JSON line"},
  };
  for (const auto& [content, expect] : cases) {
    const std::string path = dir.file("bad.jsonl");
    write_file(path, content);
    PrepareOptions o;
    o.inputs = {path};
    o.out_dir = dir.file("out");
    o.format = InputFormat::kJsonl;
    o.threads = 3;
    const std::string e = error_of([&] { prepare_shards(o); });
    EXPECT_NE(e.find(path + expect), std::string::npos) << e << "\nlacks: " << path + expect;
  }
  // --json-key names another key.
  write_file(dir.file("k.jsonl"), "{\"text\": \"a\", \"body\": \"b\"}\n{\"text\": \"c\"}\n");
  PrepareOptions o;
  o.inputs = {dir.file("k.jsonl")};
  o.out_dir = dir.file("out");
  o.format = InputFormat::kJsonl;
  o.json_key = "body";
  const std::string e = error_of([&] { prepare_shards(o); });
  EXPECT_NE(e.find(dir.file("k.jsonl") + ":2: no \"body\" key"), std::string::npos) << e;
}

TEST(Tokenizer, UnknownOrBrokenTokenizerFilesAreNamed) {
  test::TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"random.bin", std::string("\x01\x02 not a model \xff", 17)},
      {"empty.model", ""},
      {"half.json", "{\"config\": {\"pattern\": \"x\""},
      {"noconfig.json", "{\"vocab\": []}"},
      // fuzz/tekken and fuzz/tokenizer: a number past double's range (json out_of_range.406).
      {"overflow.json", "{\"config\": {\"default_vocab_size\": 777779777777777.7E77777777777}}"},
      {"tiny.json",
       "{\"config\": {\"pattern\": \".\", \"default_vocab_size\": 300, "
       "\"default_num_special_tokens\": 3, \"version\": \"v3\"}, \"vocab\": []}"},
      {"version.json",
       "{\"config\": {\"pattern\": \".\", \"default_vocab_size\": 300, "
       "\"default_num_special_tokens\": 3, \"version\": \"v99\"}, \"vocab\": []}"},
  };
  for (const auto& [name, content] : cases) {
    write_file(dir.file(name), content);
    const std::string e = error_of([&] { make_tokenizer(dir.file(name)); });
    EXPECT_EQ(e.rfind(dir.file(name) + ": ", 0), 0u) << name << ": " << e;
  }
  EXPECT_NE(error_of([] { make_tokenizer("bpe"); }).find("--tokenizer: unknown tokenizer 'bpe'"),
            std::string::npos);
}

TEST(Tokenizer, InvalidUtf8IsNamedWithItsOffset) {
  SKIP_WITHOUT_MISTRAL_DATA();
  test::TempDir dir;
  write_file(dir.file("bad.txt"), "caf\xc3\xa9 ok\n\xed\xa0\x80 surrogate");
  PrepareOptions o;
  o.inputs = {dir.file("bad.txt")};
  o.out_dir = dir.file("out");
  o.tokenizer = mistral_data_dir() + "/tekken_240911.json";
  const std::string e = error_of([&] { prepare_shards(o); });
  EXPECT_NE(e.find(dir.file("bad.txt") + ": invalid UTF-8 at byte offset 9"), std::string::npos)
      << e;
  EXPECT_EQ(invalid_utf8_offset("plain ascii and \xc3\xa9 \xf0\x9f\x98\x80"), std::string::npos);
  EXPECT_EQ(invalid_utf8_offset("\xc0\x80"), 0u);            // overlong
  EXPECT_EQ(invalid_utf8_offset("ab\xf4\x90\x80\x80"), 2u);  // above U+10FFFF
  EXPECT_EQ(invalid_utf8_offset("abcdefgh\xe2\x82"), 8u);    // truncated
}

// tiktoken's merge written as plainly as possible: repeatedly merge the leftmost lowest-rank pair.
std::vector<uint32_t> reference_merge(const std::map<std::string, uint32_t>& ranks,
                                      const std::string& piece) {
  if (auto it = ranks.find(piece); it != ranks.end()) return {it->second};
  std::vector<std::string> parts;
  for (char c : piece) parts.emplace_back(1, c);
  for (;;) {
    size_t best = 0;
    uint32_t best_rank = UINT32_MAX;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      const auto it = ranks.find(parts[i] + parts[i + 1]);
      if (it != ranks.end() && it->second < best_rank) {
        best_rank = it->second;
        best = i;
      }
    }
    if (best_rank == UINT32_MAX) break;
    parts[best] += parts[best + 1];
    parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
  std::vector<uint32_t> out;
  for (const auto& p : parts) out.push_back(ranks.at(p));
  return out;
}

TEST(BytePair, MergesLikeThePlainReferenceOnShortAndLongPieces) {
  std::mt19937 rng(20240911);
  for (int vocab_trial = 0; vocab_trial < 4; ++vocab_trial) {
    // The bytes 'a'..'d' and random merges of existing entries, ranked in creation order.
    std::map<std::string, uint32_t> ranks;
    std::vector<std::string> entries;
    for (int c = 0; c < 256; ++c) {
      entries.emplace_back(1, static_cast<char>(c));
      ranks[entries.back()] = static_cast<uint32_t>(c);
    }
    while (entries.size() < 256 + 300) {
      const size_t k = entries.size();
      const std::string a =
          k > 256 && rng() % 3 ? entries[256 + rng() % (k - 256)] : entries[97 + rng() % 4];
      const std::string b =
          k > 256 && rng() % 3 == 0 ? entries[256 + rng() % (k - 256)] : entries[97 + rng() % 4];
      const std::string m = rng() % 2 ? a + b : b + a;
      if (m.size() > 12 || ranks.count(m)) continue;
      ranks[m] = static_cast<uint32_t>(entries.size());
      entries.push_back(m);
    }
    RankTable table(ranks.size());
    for (const auto& [bytes, rank] : ranks) table.add(bytes, rank);
    EXPECT_EQ(table.size(), ranks.size());
    EXPECT_EQ(table.find("zzzzzzzzzzzzzzzzzzzz"), RankTable::kNone);
    for (int trial = 0; trial < 300; ++trial) {
      const size_t n = 1 + rng() % (trial % 3 == 0 ? 600 : kShortPiece);
      std::string piece;
      for (size_t i = 0; i < n; ++i) piece.push_back(static_cast<char>('a' + rng() % 4));
      std::vector<uint32_t> got;
      byte_pair_encode(table, piece, got);
      ASSERT_EQ(got, reference_merge(ranks, piece)) << "piece of " << n << " bytes: " << piece;
    }
  }
}

}  // namespace
}  // namespace tmt
