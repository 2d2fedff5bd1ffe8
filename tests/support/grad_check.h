// Finite-difference gradient checks in fp64.
//
// numeric_gradient perturbs each element of `x` by ±eps and differences a scalar loss (central
// differences, error O(eps²)). A typical op test builds loss = Σ dy ⊙ f(x) with a fixed random dy,
// so the analytic gradient of the loss with respect to x is exactly what the op's backward returns.
#pragma once

#include <functional>
#include <vector>

#include "kernels/base/tensor.h"

namespace tmt::test {

// d loss / d x for every element of x (an f64 host tensor); x is restored afterwards.
std::vector<double> numeric_gradient(const std::function<double()>& loss, const Tensor& x,
                                     double eps = 1e-6);

// Σ a ⊙ b over two f64 host tensors of the same size.
double dot(const Tensor& a, const Tensor& b);

}  // namespace tmt::test
