#include "data/tekken.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <fmt/format.h>
#include <pcre2.h>

#include <array>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "data/byte_pair.h"
#include "kernels/base/check.h"

namespace tmt {
namespace {

using nlohmann::json;

constexpr std::array<const char*, 7> kVersions = {"v1", "v2", "v3", "v7", "v11", "v13", "v15"};

// Standard base64 (RFC 4648, with '=' padding); false on any other character.
bool base64_decode(std::string_view in, std::string& out) {
  out.clear();
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+') {
      v = 62;
    } else if (c == '/') {
      v = 63;
    } else if (c == '=') {
      ++pad;
      continue;
    } else {
      return false;
    }
    if (pad > 0) return false;  // data after padding
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return pad <= 2 && (in.size() % 4 == 0);
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

// What one thread needs to run the regex: match data, and a JIT stack large enough for long runs of
// one character class (the default 32 KiB is not).
struct MatchScratch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  MatchScratch() {
    TMT_CHECK(data && stack && context, "PCRE2: cannot allocate match data");
    pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchScratch() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;
};

// PCRE2's \s (with UCP) also matches U+180E MONGOLIAN VOWEL SEPARATOR, which Unicode's White_Space
// (what \s means to tiktoken's Rust regex) left in 6.3. \s and \S are therefore spelled out as
// White_Space: inside a class its members, outside a class a class of them (or of the rest).
constexpr const char* kWhiteSpace =
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}"
    "\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

std::string with_unicode_white_space(const std::string& pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      if (e == 's') {
        out += in_class ? std::string(kWhiteSpace) : fmt::format("[{}]", kWhiteSpace);
      } else if (e == 'S' && !in_class) {
        out += fmt::format("[^{}]", kWhiteSpace);
      } else {
        out += c;
        out += e;  // \S inside a class stays PCRE2's (no tekken pattern has it)
      }
      continue;
    }
    out += c;
    if (!in_class && c == '[') {
      in_class = true;
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];  // a literal ]
    } else if (in_class && c == ']') {
      in_class = false;
    }
  }
  return out;
}

const json& field(const std::string& path, const json& object, const char* parent,
                  const char* key) {
  const auto it = object.find(key);
  if (it == object.end()) input_error("{}: not a tekken tokenizer: no {}{}", path, parent, key);
  return *it;
}

template <class T>
T number(const std::string& path, const json& object, const char* parent, const char* key) {
  const json& v = field(path, object, parent, key);
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX) {
    input_error("{}: {}{}: expected a non-negative integer, got {}", path, parent, key, v.dump());
  }
  return v.get<T>();
}

class TekkenTokenizer final : public Tokenizer {
 public:
  TekkenTokenizer(const std::string& path, const json& file) : ranks_(1) {
    name_ = "tekken:" + std::filesystem::path(path).filename().string();
    const json& config = field(path, file, "", "config");
    if (!config.is_object()) input_error("{}: config: expected an object", path);
    const json& version = field(path, config, "config.", "version");
    if (!version.is_string() || std::find(kVersions.begin(), kVersions.end(),
                                          version.get<std::string>()) == kVersions.end()) {
      input_error("{}: config.version: unknown tokenizer version {} (known: {})", path,
                  version.dump(), fmt::join(kVersions, ", "));
    }
    vocab_size_ = number<uint32_t>(path, config, "config.", "default_vocab_size");
    specials_ = number<uint32_t>(path, config, "config.", "default_num_special_tokens");
    if (specials_ >= vocab_size_) {
      input_error("{}: config: {} special tokens leave no room in a vocabulary of {}", path,
                  specials_, vocab_size_);
    }
    read_vocab(path, field(path, file, "", "vocab"));
    read_special_tokens(path, file, version.get<std::string>());
    compile(path, field(path, config, "config.", "pattern"));
  }

  ~TekkenTokenizer() override { pcre2_code_free(code_); }
  TekkenTokenizer(const TekkenTokenizer&) = delete;
  TekkenTokenizer& operator=(const TekkenTokenizer&) = delete;

  std::string name() const override { return name_; }
  uint32_t vocab_size() const override { return vocab_size_; }
  std::optional<uint32_t> bos() const override { return bos_; }
  std::optional<uint32_t> eos() const override { return eos_; }

  void encode(std::string_view text, std::vector<uint32_t>& out) const override {
    if (const size_t bad = invalid_utf8_offset(text); bad != std::string_view::npos) {
      input_error("invalid UTF-8 at byte offset {}", bad);
    }
    thread_local MatchScratch scratch;
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    const size_t begin = out.size();
    for (size_t pos = 0; pos < text.size();) {
      // The subject was checked above: the interpreter need not check it again at every match.
      const int rc =
          jit_ ? pcre2_jit_match(code_, subject, text.size(), pos, 0, scratch.data, scratch.context)
               : pcre2_match(code_, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, scratch.data,
                             scratch.context);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) input_error("the pattern fails at byte offset {}: {}", pos, pcre2_message(rc));
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(scratch.data);
      if (ov[1] == ov[0]) {  // an empty match: step over one character, as find_iter does
        pos = ov[1] + 1;
        while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xc0) == 0x80) ++pos;
        continue;
      }
      byte_pair_encode(ranks_, text.substr(ov[0], ov[1] - ov[0]), out);
      pos = ov[1];
    }
    for (size_t i = begin; i < out.size(); ++i) out[i] += specials_;
  }

  std::string decode(const std::vector<uint32_t>& tokens) const override {
    std::string s;
    for (uint32_t t : tokens) {
      if (t < specials_ || t >= vocab_size_) continue;  // special tokens decode to nothing
      const uint32_t r = t - specials_;
      s.append(bytes_, offsets_[r], offsets_[r + 1] - offsets_[r]);
    }
    return s;
  }

 private:
  void read_vocab(const std::string& path, const json& vocab) {
    const uint32_t inner = vocab_size_ - specials_;
    if (!vocab.is_array() || vocab.size() < inner) {
      input_error(
          "{}: vocab: expected a list of at least {} entries (vocabulary {} less {} special "
          "tokens), got {}",
          path, inner, vocab_size_, specials_,
          vocab.is_array() ? std::to_string(vocab.size()) : "no list");
    }
    ranks_ = RankTable(inner);
    offsets_.reserve(inner + 1);
    offsets_.push_back(0);
    std::string piece;
    for (uint32_t i = 0; i < inner; ++i) {  // the rest of the list is cut, as mistral_common does
      const json& e = vocab[i];
      const auto rank = e.is_object() ? e.find("rank") : e.end();
      const auto b64 = e.is_object() ? e.find("token_bytes") : e.end();
      if (rank == e.end() || !rank->is_number_integer() || rank->get<int64_t>() != i) {
        input_error("{}: vocab[{}]: expected rank {}", path, i, i);
      }
      if (b64 == e.end() || !b64->is_string() || !base64_decode(b64->get<std::string>(), piece) ||
          piece.empty()) {
        input_error("{}: vocab[{}].token_bytes: not a non-empty base64 string", path, i);
      }
      if (i < 256 && (piece.size() != 1 || static_cast<unsigned char>(piece[0]) != i)) {
        input_error("{}: vocab[{}]: the first 256 entries must be the bytes 0..255", path, i);
      }
      if (!ranks_.add(piece, i)) input_error("{}: vocab[{}]: repeats an earlier entry", path, i);
      bytes_ += piece;
      offsets_.push_back(static_cast<uint32_t>(bytes_.size()));
    }
  }

  void read_special_tokens(const std::string& path, const json& file, const std::string& version) {
    const auto it = file.find("special_tokens");
    if (it == file.end() || it->is_null()) {
      // Files of versions up to v7 may leave them out: Tekkenizer's default list then applies.
      if (version != "v1" && version != "v2" && version != "v3" && version != "v7") {
        input_error("{}: special_tokens: required for tokenizer version {}", path, version);
      }
      bos_ = 1;
      eos_ = 2;
      return;
    }
    if (!it->is_array() || it->size() > specials_) {
      input_error("{}: special_tokens: expected a list of at most {} entries", path, specials_);
    }
    std::set<std::string> seen;
    for (size_t i = 0; i < it->size(); ++i) {
      const json& t = (*it)[i];
      const auto str = t.is_object() ? t.find("token_str") : t.end();
      const auto rank = t.is_object() ? t.find("rank") : t.end();
      if (str == t.end() || !str->is_string() || rank == t.end() || !rank->is_number_integer() ||
          rank->get<int64_t>() < 0 || rank->get<int64_t>() >= specials_) {
        input_error("{}: special_tokens[{}]: expected {{rank < {}, token_str}}", path, i,
                    specials_);
      }
      const std::string s = str->get<std::string>();
      if (!seen.insert(s).second) input_error("{}: special_tokens[{}]: {} repeats", path, i, s);
      if (s == "<s>") bos_ = rank->get<uint32_t>();
      if (s == "</s>") eos_ = rank->get<uint32_t>();
    }
    if (!bos_ || !eos_) input_error("{}: special_tokens: no <s> or no </s>", path);
  }

  void compile(const std::string& path, const json& pattern) {
    if (!pattern.is_string()) input_error("{}: config.pattern: expected a string", path);
    const std::string p = with_unicode_white_space(pattern.get<std::string>());
    int error = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(), PCRE2_UTF | PCRE2_UCP,
                          &error, &offset, nullptr);
    if (!code_) {
      input_error("{}: config.pattern: does not compile at offset {}: {}", path, offset,
                  pcre2_message(error));
    }
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;  // else the interpreter: slower
  }

  std::string name_;
  uint32_t vocab_size_ = 0;
  uint32_t specials_ = 0;
  std::optional<uint32_t> bos_, eos_;
  RankTable ranks_;
  std::string bytes_;              // every ordinary token's bytes, in rank order
  std::vector<uint32_t> offsets_;  // token r is bytes_[offsets_[r], offsets_[r + 1])
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
};

}  // namespace

std::unique_ptr<Tokenizer> load_tekken(const std::string& path, const std::string& text) {
  json file;
  try {
    file = json::parse(text);
  } catch (const json::parse_error& e) {
    input_error("{}: not a tekken tokenizer: invalid JSON at byte {}", path, e.byte);
  } catch (const json::exception& e) {  // a number past double's range (out_of_range.406)
    input_error("{}: not a tekken tokenizer: {}", path, e.what());
  }
  if (!file.is_object()) input_error("{}: not a tekken tokenizer: not a JSON object", path);
  return std::make_unique<TekkenTokenizer>(path, file);
}

}  // namespace tmt
