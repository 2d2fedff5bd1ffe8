// `tramontane prepare`: text or JSONL files -> token shards, split into train and validation.
//
// Documents (data/documents.h: each file with --format text, each JSON line's `json_key` string with
// --format jsonl) are tokenized in input order on `threads` threads; the token stream does not
// depend on the thread count. With a tokenizer that has BOS/EOS (tekken, SentencePiece) each
// document is BOS + its tokens + EOS; with `bytes` (no BOS/EOS) documents are joined with one '\n'
// token between them. Documents are read and tokenized a chunk at a time and their tokens go to a
// temporary file in out_dir, so memory holds one chunk of text, not the corpus. The last
// val_fraction of the tokens (at least one) becomes the validation split.
// Output:
//   out_dir/train/shard-00000.bin, shard-00001.bin, ...   (at most shard_tokens tokens each)
//   out_dir/val/shard-00000.bin, ...
// each recording the tokenizer's vocabulary size (data/shard.h).
// Progress (MB/s, tokens/s) goes to stderr every few seconds when stderr is a terminal or the
// inputs exceed 1 GiB.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/documents.h"

namespace tmt {

struct PrepareOptions {
  std::vector<std::string> inputs;
  std::string out_dir;
  std::string tokenizer = "bytes";
  InputFormat format = InputFormat::kText;
  std::string json_key = "text";
  int threads = 0;  // 0: the cores this process may use
  double val_fraction = 0.05;
  int64_t shard_tokens = int64_t{1} << 26;
};

struct PrepareSummary {
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  int64_t documents = 0;
  std::vector<std::string> files;
  std::string describe() const;  // one line for people
};

// Throws InputError naming the input (file:line for JSONL) or output path at fault.
PrepareSummary prepare_shards(const PrepareOptions& options);

// The cores this process may run on (its CPU affinity).
int usable_cores();

}  // namespace tmt
