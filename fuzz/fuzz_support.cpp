#include "fuzz/fuzz_support.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>

namespace tmt::fuzz {
namespace fs = std::filesystem;

namespace {
fs::path make_scratch() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/tmt-fuzz-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    perror("tmt fuzz: mkdtemp");
    std::abort();
  }
  return pattern;
}

// Removes the scratch directory when the process ends normally.
struct Scratch {
  fs::path dir = make_scratch();
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};
}  // namespace

const fs::path& scratch_dir() {
  static const Scratch scratch;
  return scratch.dir;
}

fs::path write_file(const std::string& name, std::string_view bytes) {
  const fs::path path = scratch_dir() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    perror(("tmt fuzz: cannot write " + path.string()).c_str());
    std::abort();
  }
  return path;
}

std::vector<std::string> split(std::string_view text, char sep) {
  std::vector<std::string> out;
  if (text.empty()) return out;
  size_t begin = 0;
  for (;;) {
    const size_t end = text.find(sep, begin);
    out.emplace_back(text.substr(begin, end == std::string_view::npos ? end : end - begin));
    if (end == std::string_view::npos) return out;
    begin = end + 1;
  }
}

}  // namespace tmt::fuzz
