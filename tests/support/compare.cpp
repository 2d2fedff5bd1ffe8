#include "tests/support/compare.h"

#include <cmath>
#include <cstdio>
#include <limits>

namespace tmt::test {

::testing::AssertionResult all_close(std::span<const double> got, std::span<const double> want,
                                     double rtol) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure()
           << "sizes differ: got " << got.size() << ", want " << want.size();
  }
  double diff2 = 0.0, want2 = 0.0, max_abs = 0.0, max_rel = 0.0;
  long first_bad = -1, first_nan = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i]) || !std::isfinite(want[i])) {
      if (first_nan < 0) first_nan = static_cast<long>(i);
      continue;
    }
    const double d = std::fabs(got[i] - want[i]);
    diff2 += d * d;
    want2 += want[i] * want[i];
    max_abs = std::max(max_abs, d);
    const double rel = d / std::max(std::fabs(want[i]), std::numeric_limits<double>::min());
    max_rel = std::max(max_rel, rel);
    if (first_bad < 0 && d > rtol * std::fabs(want[i]) + rtol * 1e-3)
      first_bad = static_cast<long>(i);
  }
  const double norm_err =
      std::sqrt(diff2) / std::max(std::sqrt(want2), std::numeric_limits<double>::min());
  if (first_nan >= 0) {
    return ::testing::AssertionFailure() << "non-finite value at index " << first_nan << ": got "
                                         << got[static_cast<size_t>(first_nan)] << ", want "
                                         << want[static_cast<size_t>(first_nan)];
  }
  if (norm_err > rtol) {
    auto f = ::testing::AssertionFailure();
    f << "relative error by norm " << norm_err << " > " << rtol << " (n=" << got.size()
      << ", max abs err " << max_abs << ", max rel err " << max_rel << ")";
    if (first_bad >= 0) {
      const auto i = static_cast<size_t>(first_bad);
      f << "; first bad index " << i << ": got " << got[i] << ", want " << want[i];
    }
    return f;
  }
  return ::testing::AssertionSuccess() << "relative error by norm " << norm_err;
}

void expect_close(std::span<const double> got, std::span<const double> want, double rtol,
                  const char* what) {
  const ::testing::AssertionResult r = all_close(got, want, rtol);
  EXPECT_TRUE(r) << what;
  if (r) std::printf("  %s: %s\n", what, r.message());
}

void set_values(const Tensor& t, const std::vector<double>& values) {
  TMT_CHECK(t.device == Device::kCpu && static_cast<int64_t>(values.size()) <= t.numel(),
            "set_values: {} values into {}", values.size(), t.str());
  for (size_t i = 0; i < values.size(); ++i) store_element(t.dtype, t.data, i, values[i]);
}

std::vector<double> to_doubles(const Tensor& t) {
  TMT_CHECK(t.device == Device::kCpu, "to_doubles needs a host tensor, got {}", t.str());
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = load_element(t.dtype, t.data, i);
  return v;
}

::testing::AssertionResult all_close(const Tensor& got, const Tensor& want, double rtol) {
  if (!(got.shape == want.shape)) {
    return ::testing::AssertionFailure()
           << "shapes differ: got " << got.str() << ", want " << want.str();
  }
  const auto g = to_doubles(got);
  const auto w = to_doubles(want);
  return all_close(std::span<const double>(g), std::span<const double>(w), rtol);
}

}  // namespace tmt::test
