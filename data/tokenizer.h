// Tokenizers turn UTF-8 text into token ids. Three kinds, chosen by `make_tokenizer`:
//   bytes        every byte of the text is one token (vocabulary 256, no BOS/EOS); needs no file and
//                accepts any bytes.
//   tekken JSON  Mistral's tiktoken-style byte-level BPE (data/tekken.h), e.g. tekken_240911.json.
//   SentencePiece model  Mistral's tokenizer.model v1/v2/v3 (data/sentencepiece.h).
// A file is recognised by its content, not its name: a JSON object with `config` and `vocab` is
// tekken; anything else must load as a SentencePiece model.
//
// `encode` gives the ids of the text alone, exactly as mistral_common's `encode(text, bos=False,
// eos=False)`; the caller adds bos()/eos() around each document. Text that looks like a special token
// ("<s>", "[INST]") is encoded as ordinary text, never as the special token. encode is const and may
// run on several threads at once; bad text (invalid UTF-8 for tekken/SentencePiece) throws InputError
// with the byte offset, which the caller prefixes with the file (and line).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tmt {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string name() const = 0;
  virtual uint32_t vocab_size() const = 0;          // every id is < vocab_size (V)
  virtual std::optional<uint32_t> bos() const = 0;  // beginning of a document; none for bytes
  virtual std::optional<uint32_t> eos() const = 0;  // end of a document; none for bytes
  virtual void encode(std::string_view text, std::vector<uint32_t>& out) const = 0;  // appends
  virtual std::string decode(const std::vector<uint32_t>& tokens) const = 0;
};

// "bytes", or the path of a tekken JSON or SentencePiece model. A name that is neither "bytes" nor
// an existing file, and a file that is no tokenizer, throw InputError naming it.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name_or_path);

// The offset of the first byte of `text` that is not well-formed UTF-8 (overlong forms, surrogates
// and code points above U+10FFFF are not), or npos.
size_t invalid_utf8_offset(std::string_view text);

}  // namespace tmt
