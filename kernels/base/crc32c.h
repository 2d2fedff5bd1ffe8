// CRC-32C (Castagnoli): TensorBoard records and checkpoint shard checksums.
#pragma once

#include <cstdint>
#include <string_view>

namespace tmt {

uint32_t crc32c(std::string_view bytes);
// The CRC of (the bytes `crc` covers) followed by `bytes`: crc32c_extend(crc32c(a), b) ==
// crc32c(a + b), and crc32c_extend(0, b) == crc32c(b).
uint32_t crc32c_extend(uint32_t crc, std::string_view bytes);

}  // namespace tmt
