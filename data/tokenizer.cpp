#include "data/tokenizer.h"

#include "kernels/base/check.h"

namespace tmt {
namespace {

class ByteTokenizer final : public Tokenizer {
 public:
  std::string name() const override { return "bytes"; }
  uint32_t vocab_size() const override { return 256; }
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

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name) {
  if (name == "bytes") return std::make_unique<ByteTokenizer>();
  input_error("--tokenizer: unknown tokenizer '{}' (known: bytes)", name);
}

}  // namespace tmt
