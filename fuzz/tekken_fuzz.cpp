// Tekken tokenizer files (data/tekken.h): the input is the JSON; a tokenizer that loads encodes
// and decodes a fixed text (ASCII, accents, an emoji, what looks like special tokens).
#include "data/tekken.h"
#include "fuzz/fuzz_support.h"

using namespace tmt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::expect_input_error([&] {
    const auto tok = load_tekken("fuzz.json", std::string(fuzz::text_of(data, size)));
    std::vector<uint32_t> ids;
    tok->encode("Hello, world! caf\xc3\xa9 \xf0\x9f\x98\x80 <s>[INST] 123  \n\t x", ids);
    for (const uint32_t id : ids) {
      if (id >= tok->vocab_size()) std::abort();
    }
    (void)tok->decode(ids);
    (void)tok->bos();
    (void)tok->eos();
  });
  return 0;
}
