// Comparisons that say how far apart two arrays are, not just whether they are.
//
// all_close passes when ||got - want|| <= rtol * ||want|| (relative error by norm, the measure
// DESIGN.md §3 asks for) and nothing is NaN or Inf. On failure it reports the norm error, the
// largest absolute and relative element errors, and the first element outside rtol.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <span>
#include <vector>

#include "kernels/base/tensor.h"

namespace tmt::test {

::testing::AssertionResult all_close(std::span<const double> got, std::span<const double> want,
                                     double rtol);
// Any floating dtype on the host; values are read through load_element.
::testing::AssertionResult all_close(const Tensor& got, const Tensor& want, double rtol);

// EXPECTs all_close and prints the error it saw, so a passing test still records how close it was.
void expect_close(std::span<const double> got, std::span<const double> want, double rtol,
                  const char* what);

// Writes values into a host tensor (through its dtype's rounding): the inverse of to_doubles.
void set_values(const Tensor& t, const std::vector<double>& values);

// The values of a host tensor as doubles.
std::vector<double> to_doubles(const Tensor& t);

}  // namespace tmt::test
