// Tekken: Mistral's tiktoken-style byte-level BPE, read from its JSON file (e.g. tekken_240911.json).
//
// The file, as mistral_common's Tekkenizer reads it:
//   config.pattern                     the pre-split regex (tiktoken's pat_str)
//   config.default_vocab_size          V, special tokens included
//   config.default_num_special_tokens  S; special ids are 0..S-1
//   config.version                     "v1" ... "v15"
//   vocab[i] = {rank: i, token_bytes: base64, token_str}; only the first V - S entries are used
//             (vocab[i] for i < 256 must be the single byte i)
//   special_tokens[] = {rank, token_str, is_control}; when absent (versions up to v7) the default
//             list, whose <s> is 1 and </s> is 2
// Encoding: the text is split by the pattern (PCRE2, UTF + Unicode properties, JIT; \s and \S are
// rewritten to Unicode's White_Space, as tiktoken's Rust regex reads them); each match is
// byte-pair encoded (data/byte_pair.h); a token's id is its rank + S. bos/eos are the ids of the
// special tokens "<s>" and "</s>". Special tokens are never recognised in text.
#pragma once

#include <memory>
#include <string>

#include "data/tokenizer.h"

namespace tmt {

// `json` is the file's content; `path` names it in errors (InputError naming the file and what is
// wrong).
std::unique_ptr<Tokenizer> load_tekken(const std::string& path, const std::string& json);

}  // namespace tmt
