// Tokenizers against mistral_common: every document of the multilingual corpus
// (tests/fixtures/tokenizer/corpus.jsonl) encodes, token for token, to the ids that mistral_common
// 1.13.1 gives (scripts/reference/tokenizer_reference.py) for tekken_240911.json, tokenizer.model.v1
// and mistral_instruct_tokenizer_240323.model.v3; broken tokenizer files are InputErrors naming them.
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
#include "kernels/base/check.h"
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

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
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

TEST(Tokenizer, UnknownOrBrokenTokenizerFilesAreNamed) {
  test::TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"random.bin", std::string("\x01\x02 not a model \xff", 17)},
      {"empty.model", ""},
      {"half.json", "{\"config\": {\"pattern\": \"x\""},
      {"noconfig.json", "{\"vocab\": []}"},
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
