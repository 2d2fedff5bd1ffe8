#include "tests/support/grad_check.h"

namespace tmt::test {

std::vector<double> numeric_gradient(const std::function<double()>& loss, const Tensor& x,
                                     double eps) {
  TMT_CHECK(x.device == Device::kCpu && x.dtype == DType::kF64,
            "gradient checks need f64 host tensors, got {}", x.str());
  double* p = x.ptr<double>();
  std::vector<double> g(static_cast<size_t>(x.numel()));
  for (size_t i = 0; i < g.size(); ++i) {
    const double saved = p[i];
    p[i] = saved + eps;
    const double up = loss();
    p[i] = saved - eps;
    const double down = loss();
    p[i] = saved;
    g[i] = (up - down) / (2.0 * eps);
  }
  return g;
}

double dot(const Tensor& a, const Tensor& b) {
  TMT_CHECK(a.numel() == b.numel(), "dot of {} and {}", a.str(), b.str());
  const double* x = a.ptr<double>();
  const double* y = b.ptr<double>();
  double s = 0.0;
  for (int64_t i = 0; i < a.numel(); ++i) s += x[i] * y[i];
  return s;
}

}  // namespace tmt::test
