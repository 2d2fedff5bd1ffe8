// Tokenizers turn text into token ids. `bytes` is the one built in: every byte of the UTF-8 text is
// one token (vocabulary 256), which needs no vocabulary file and round-trips any text exactly.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tmt {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string name() const = 0;
  virtual uint32_t vocab_size() const = 0;
  virtual void encode(std::string_view text, std::vector<uint32_t>& out) const = 0;  // appends
  virtual std::string decode(const std::vector<uint32_t>& tokens) const = 0;
};

// "bytes"; anything else throws InputError naming the known tokenizers.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name);

}  // namespace tmt
