#include "data/tokenizer.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "data/sentencepiece.h"
#include "data/tekken.h"
#include "kernels/base/check.h"

namespace tmt {
namespace {

class ByteTokenizer final : public Tokenizer {
 public:
  std::string name() const override { return "bytes"; }
  uint32_t vocab_size() const override { return 256; }
  std::optional<uint32_t> bos() const override { return std::nullopt; }
  std::optional<uint32_t> eos() const override { return std::nullopt; }
  void encode(std::string_view text, std::vector<uint32_t>& out) const override {
    for (char c : text) out.push_back(static_cast<unsigned char>(c));
  }
  std::string decode(const std::vector<uint32_t>& tokens) const override {
    std::string s;
    s.reserve(tokens.size());
    for (uint32_t t : tokens) s.push_back(static_cast<char>(t));
    return s;
  }
};

}  // namespace

size_t invalid_utf8_offset(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    // Eight ASCII bytes at a time: most text is mostly ASCII.
    if (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, s + i, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;  // the allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;  // overlong
      if (c == 0xed) hi = 0x9f;  // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;  // overlong
      if (c == 0xf4) hi = 0x8f;  // above U+10FFFF
    } else {
      return i;
    }
    if (i + len > n || s[i + 1] < lo || s[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k) {
      if ((s[i + k] & 0xc0) != 0x80) return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name) {
  if (name == "bytes") return std::make_unique<ByteTokenizer>();
  namespace fs = std::filesystem;
  if (!fs::exists(name)) {
    input_error(
        "--tokenizer: unknown tokenizer '{}' (known: bytes, or the path of a tekken JSON or a "
        "SentencePiece model)",
        name);
  }
  if (fs::is_directory(name)) input_error("{}: is a directory, not a tokenizer file", name);
  std::ifstream in(name, std::ios::binary);
  if (!in) input_error("{}: cannot read the tokenizer: {}", name, std::strerror(errno));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '{') return load_tekken(name, text);
  std::string why;
  if (auto sp = load_sentencepiece(name, &why)) return sp;
  input_error("{}: not a tokenizer: neither a tekken JSON nor a SentencePiece model ({})", name,
              why);
}

}  // namespace tmt
