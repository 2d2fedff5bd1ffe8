// The safetensors readers (trainer/interop/safetensors.h): the input is a .safetensors file, read
// mapped (import's path, every tensor's bytes touched) and whole (the reference fixtures' path).
#include "fuzz/fuzz_support.h"
#include "trainer/interop/safetensors.h"

using namespace tmt;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path =
      fuzz::write_file("input.safetensors", fuzz::text_of(data, size)).string();
  fuzz::expect_input_error([&] {
    const MappedSafetensors mapped(path);
    double sum = 0;
    for (const TensorEntry& t : mapped.tensors()) {
      const std::span<const std::byte> bytes = mapped.bytes(t);
      if (mapped.find(t.name) != &t) std::abort();
      if (!bytes.empty())
        sum += static_cast<double>(bytes.front()) + static_cast<double>(bytes.back());
      mapped.release(t);
    }
    (void)sum;
  });
  fuzz::expect_input_error([&] {
    SafetensorsFile file = SafetensorsFile::read(path);
    for (StoredTensor& t : file.tensors) {
      if (t.numel() > 0) (void)t.at(t.numel() - 1);
    }
  });
  return 0;
}
