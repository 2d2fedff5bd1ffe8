// `tramontane prepare`: text files -> token shards, split into train and validation.
//
// The inputs are read in the order given and tokenized; files are joined with one '\n' token
// between them. The last val_fraction of the tokens (at least one) becomes the validation split.
// Output:
//   out_dir/train/shard-00000.bin, shard-00001.bin, ...   (at most shard_tokens tokens each)
//   out_dir/val/shard-00000.bin, ...
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tmt {

struct PrepareOptions {
  std::vector<std::string> inputs;
  std::string out_dir;
  std::string tokenizer = "bytes";
  double val_fraction = 0.05;
  int64_t shard_tokens = int64_t{1} << 26;
};

struct PrepareSummary {
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  std::vector<std::string> files;
  std::string describe() const;  // one line for people
};

// Throws InputError naming the input or output path at fault.
PrepareSummary prepare_shards(const PrepareOptions& options);

}  // namespace tmt
