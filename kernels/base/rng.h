// Counter-based random numbers: value `index` of stream (seed, stream) is a pure function of the
// three, so any rank can draw exactly the values of its shard of a tensor, in any order, with no
// shared state. (splitmix64's finaliser as the mixing function; Box-Muller for normals.)
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

namespace tmt {

constexpr uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// FNV-1a: a stable 64-bit name for a string (e.g. a parameter's), the same on every platform.
constexpr uint64_t hash_name(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  return h;
}

constexpr uint64_t random_bits(uint64_t seed, uint64_t stream, uint64_t index) {
  return mix64(seed ^ mix64(stream ^ mix64(index)));
}

// Uniform in (0, 1): never exactly 0, so log() is safe.
inline double random_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  return (static_cast<double>(random_bits(seed, stream, index) >> 11) + 0.5) * 0x1.0p-53;
}

// Standard normal.
inline double random_normal(uint64_t seed, uint64_t stream, uint64_t index) {
  const double u1 = random_uniform(seed, stream, 2 * index);
  const double u2 = random_uniform(seed, stream, 2 * index + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * 3.14159265358979323846 * u2);
}

}  // namespace tmt
