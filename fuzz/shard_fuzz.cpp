// The token shard reader (data/shard.h): the input is a shard file; a shard that opens is read
// whole, checked against its own vocabulary size, and opened as a dataset of short sequences.
#include "data/shard.h"
#include "data/token_dataset.h"
#include "fuzz/fuzz_support.h"

using namespace tmt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_file("input.bin", fuzz::text_of(data, size)).string();
  fuzz::expect_input_error([&] {
    const Shard shard(path);
    std::vector<int32_t> tokens(static_cast<size_t>(shard.size()));
    shard.read(0, tokens);
    if (shard.vocab_size() > 0) shard.check_vocab(shard.vocab_size());
    const TokenDataset dataset({path}, 1 << 17, 4, 1, TokenDataset::Order::kShuffled);
  });
  return 0;
}
