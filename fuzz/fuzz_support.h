// What the fuzz targets share (docs/FUZZING.md). A target calls one parser of the project on its
// input and lets only InputError through: bad input must end as an `error:` line, so anything
// else that escapes (another exception, an abort, a sanitizer report, TMT_CHECK's exit, a hang) is
// a finding that libFuzzer reports with the input that caused it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/base/check.h"

namespace tmt::fuzz {

// A directory of this process's own, made on first use and removed at exit.
const std::filesystem::path& scratch_dir();

// Writes `bytes` to scratch_dir()/name (replacing it) and returns the path.
std::filesystem::path write_file(const std::string& name, std::string_view bytes);

// The input as text.
inline std::string_view text_of(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Splits `text` at every `sep` (empty pieces kept; no piece when text is empty).
std::vector<std::string> split(std::string_view text, char sep);

// Runs f; an InputError is the expected answer to bad input and is swallowed.
template <class F>
void expect_input_error(F&& f) {
  try {
    f();
  } catch (const InputError&) {
  }
}

}  // namespace tmt::fuzz
