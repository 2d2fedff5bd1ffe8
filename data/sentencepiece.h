// SentencePiece models (Mistral's tokenizer.model v1, v2, v3) through libsentencepiece. encode is
// SentencePieceProcessor::Encode (what mistral_common's SentencePieceTokenizer.encode calls); the
// vocabulary is the model's piece count and bos/eos are its bos_id()/eos_id().
#pragma once

#include <memory>
#include <string>

#include "data/tokenizer.h"

namespace tmt {

// nullptr when `path` does not load as a SentencePiece model (`why` says what the loader said).
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path, std::string* why);

}  // namespace tmt
