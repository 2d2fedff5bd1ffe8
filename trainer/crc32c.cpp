#include "trainer/crc32c.h"

#include <array>

namespace tmt {
namespace {

constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k)
      c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;  // reflected Castagnoli
    t[i] = c;
  }
  return t;
}
constexpr auto kCrcTable = make_crc_table();

}  // namespace

uint32_t crc32c_extend(uint32_t crc, std::string_view bytes) {
  uint32_t c = crc ^ 0xffffffffu;
  for (char ch : bytes) c = kCrcTable[(c ^ static_cast<uint8_t>(ch)) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t crc32c(std::string_view bytes) { return crc32c_extend(0, bytes); }

}  // namespace tmt
