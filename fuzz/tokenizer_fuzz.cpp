// Tokenizer files as `--tokenizer` and data.tokenizer name them (data/tokenizer.h): the input is
// the file, recognised by its content (tekken JSON, else a SentencePiece model); a tokenizer that
// loads encodes and decodes a fixed text.
#include "data/tokenizer.h"
#include "fuzz/fuzz_support.h"

using namespace tmt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fuzz::write_file("tokenizer.model", fuzz::text_of(data, size)).string();
  fuzz::expect_input_error([&] {
    const auto tok = make_tokenizer(path);
    std::vector<uint32_t> ids;
    tok->encode("Hello, world! caf\xc3\xa9 \xf0\x9f\x98\x80 <s>[INST] 123  \n\t x", ids);
    for (const uint32_t id : ids) {
      if (id >= tok->vocab_size()) std::abort();
    }
    (void)tok->decode(ids);
  });
  return 0;
}
