// Deterministic random inputs for tests: fresh values per seed, never all zeros.
#pragma once

#include <cstdint>

#include "kernels/base/tensor.h"

namespace tmt::test {

// Uniform in [lo, hi) for floating tensors (rounded to the dtype), in [lo, hi) as integers
// otherwise.
void fill_uniform(const Tensor& t, uint64_t seed, double lo = -1.0, double hi = 1.0);
// Normal(0, std).
void fill_normal(const Tensor& t, uint64_t seed, double std = 1.0);

}  // namespace tmt::test
