#include "kernels/grouped_linear.h"

#include "kernels/linear.h"

namespace tmt {
namespace {

void check_args(const char* op, const Context& ctx, const Tensor& y, const Tensor& x,
                const Tensor& weight, const std::vector<int64_t>& counts) {
  TMT_CHECK(x.rank() == 2 && y.rank() == 2 && weight.rank() == 3 && x.size(0) == y.size(0) &&
                weight.size(2) == x.size(1) && weight.size(1) == y.size(1) &&
                static_cast<int64_t>(counts.size()) == weight.size(0),
            "{}: x {}, weight {}, y {} with {} groups are not [R, K], [E, N, K], [R, N]", op,
            x.str(), weight.str(), y.str(), counts.size());
  int64_t rows = 0;
  for (int64_t c : counts) {
    TMT_CHECK(c >= 0, "{}: negative group size {}", op, c);
    rows += c;
  }
  TMT_CHECK(rows == x.size(0), "{}: groups hold {} rows, x has {}", op, rows, x.size(0));
  TMT_CHECK(ctx.device == x.device, "{}: x {} is not on {}", op, x.str(), device_name(ctx.device));
}

// Expert e's weight as an [N, K] matrix.
Tensor expert(const Tensor& w, int64_t e) { return w.slice(e, e + 1).view({w.size(1), w.size(2)}); }

}  // namespace

void grouped_linear_fwd(const Context& ctx, const Tensor& y, const Tensor& x, const Tensor& weight,
                        const std::vector<int64_t>& counts) {
  check_args("grouped_linear_fwd", ctx, y, x, weight, counts);
  int64_t row = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    const int64_t n = counts[e];
    if (n > 0) {
      linear_fwd(ctx, y.slice(row, row + n), x.slice(row, row + n),
                 expert(weight, static_cast<int64_t>(e)), false);
    }
    row += n;
  }
}

void grouped_linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight,
                        const Tensor& dy, const Tensor& x, const Tensor& weight,
                        const std::vector<int64_t>& counts) {
  check_args("grouped_linear_bwd", ctx, dy, x, weight, counts);
  TMT_CHECK(dx.shape == x.shape && dweight.shape == weight.shape,
            "grouped_linear_bwd: dx {}, dweight {} for x {}, "
            "weight {}",
            dx.str(), dweight.str(), x.str(), weight.str());
  int64_t row = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    const int64_t n = counts[e];
    if (n > 0) {
      const auto i = static_cast<int64_t>(e);
      linear_bwd(ctx, dx.slice(row, row + n), expert(dweight, i), dy.slice(row, row + n),
                 x.slice(row, row + n), expert(weight, i), false);
    }
    row += n;
  }
}

}  // namespace tmt
