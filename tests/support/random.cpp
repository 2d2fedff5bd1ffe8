#include "tests/support/random.h"

#include <cmath>
#include <random>

namespace tmt::test {

void fill_uniform(const Tensor& t, uint64_t seed, double lo, double hi) {
  TMT_CHECK(t.device == Device::kCpu, "fill_uniform needs a host tensor, got {}", t.str());
  std::mt19937_64 rng(seed);
  const bool integral = !is_floating(t.dtype);
  std::uniform_real_distribution<double> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) {
    double v = u(rng);
    if (integral) v = std::floor(v);
    store_element(t.dtype, t.data, static_cast<size_t>(i), v);
  }
}

void fill_normal(const Tensor& t, uint64_t seed, double std) {
  TMT_CHECK(t.device == Device::kCpu, "fill_normal needs a host tensor, got {}", t.str());
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n(0.0, std);
  for (int64_t i = 0; i < t.numel(); ++i)
    store_element(t.dtype, t.data, static_cast<size_t>(i), n(rng));
}

}  // namespace tmt::test
