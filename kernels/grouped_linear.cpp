#include "kernels/grouped_linear.h"

#include <algorithm>

#include "kernels/base/profiler.h"
#include "kernels/linear.h"
#if TMT_WITH_CUDA
#include "kernels/cuda/grouped_gemm.h"
#endif

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
  TMT_CHECK(ctx.device == x.device && weight.device == x.device && y.device == x.device,
            "{}: x {}, weight {}, y {} not all on {}", op, x.str(), weight.str(), y.str(),
            device_name(ctx.device));
  TMT_CHECK(weight.dtype == x.dtype && y.dtype == x.dtype,
            "{}: x {}, weight {}, y {} must share a dtype", op, x.str(), weight.str(), y.str());
}

// Expert e's weight as an [N, K] matrix.
Tensor expert(const Tensor& w, int64_t e) { return w.slice(e, e + 1).view({w.size(1), w.size(2)}); }

// Costs: 2·R·N·K FLOPs a product; x, y (dx, dy) once each and the weights (read) and weight
// gradients (accumulated: read and written) of the experts that have rows. The per-expert
// linear calls inside are not recorded apart (the profiler records the outermost op only).
double used_weight_bytes(const Tensor& w, const std::vector<int64_t>& counts) {
  if (counts.empty()) return 0;
  const auto used = std::count_if(counts.begin(), counts.end(), [](int64_t c) { return c > 0; });
  return bytes_of(w) * static_cast<double>(used) / static_cast<double>(counts.size());
}

double products(const Tensor& x, const Tensor& weight) {
  return static_cast<double>(x.size(0)) * static_cast<double>(weight.size(1)) *
         static_cast<double>(x.size(1));
}

OpCost fwd_cost(const Tensor& y, const Tensor& x, const Tensor& weight,
                const std::vector<int64_t>& counts) {
  return {2 * products(x, weight), bytes_of(x, y) + used_weight_bytes(weight, counts)};
}

OpCost bwd_cost(const Tensor& dx, const Tensor& dweight, const Tensor& dy, const Tensor& x,
                const Tensor& weight, const std::vector<int64_t>& counts) {
  const double weights = used_weight_bytes(weight, counts) + 2 * used_weight_bytes(dweight, counts);
  return {4 * products(x, weight), bytes_of(dy, x, dx) + weights};
}

#if TMT_WITH_CUDA
// One product as one grouped GEMM when the requested path (cuda/grouped_gemm.h) can take it; false
// when it is left to the loop.
bool grouped(const Context& ctx, cuda::GroupedPass pass, const Tensor& out, const Tensor& a,
             const Tensor& b, const std::vector<int64_t>& counts) {
  const cuda::GroupedGemmChoice choice = cuda::requested_grouped_gemm();
  const auto experts = static_cast<int64_t>(counts.size());
  return choice.path != cuda::GroupedGemmPath::kLoop &&
         cuda::grouped_gemm_supported(choice.path, pass, out, a, b, experts, nullptr) &&
         cuda::grouped_gemm(ctx, choice, pass, out, a, b, counts);
}
#endif

}  // namespace

size_t grouped_linear_workspace_bytes(Device device, int64_t experts) {
  if (device == Device::kCpu) return linear_workspace_bytes(device);
#if TMT_WITH_CUDA
  return std::max(linear_workspace_bytes(device), cuda::grouped_gemm_workspace_bytes(experts));
#else
  (void)experts;
  return linear_workspace_bytes(device);  // fatal: no CUDA backend
#endif
}

void grouped_linear_fwd(const Context& ctx, const Tensor& y, const Tensor& x, const Tensor& weight,
                        const std::vector<int64_t>& counts) {
  check_args("grouped_linear_fwd", ctx, y, x, weight, counts);
  const ProfileScope scope(ctx, "grouped_linear_fwd", fwd_cost(y, x, weight, counts));
#if TMT_WITH_CUDA
  if (ctx.device == Device::kCuda && grouped(ctx, cuda::GroupedPass::kFwd, y, x, weight, counts)) {
    return;
  }
#endif
  // The loop: one linear call an expert with rows.
  int64_t row = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    const int64_t n = counts[e];
    if (n > 0) {
      linear_fwd(ctx, y.slice(row, row + n), x.slice(row, row + n),
                 expert(weight, static_cast<int64_t>(e)));
    }
    row += n;
  }
}

void grouped_linear_bwd(const Context& ctx, const Tensor& dx, const Tensor& dweight,
                        const Tensor& dy, const Tensor& x, const Tensor& weight,
                        const std::vector<int64_t>& counts) {
  check_args("grouped_linear_bwd", ctx, dy, x, weight, counts);
  TMT_CHECK(dx.shape == x.shape && dweight.shape == weight.shape && dx.device == x.device &&
                dweight.device == x.device,
            "grouped_linear_bwd: dx {}, dweight {} for x {}, weight {}", dx.str(), dweight.str(),
            x.str(), weight.str());
  const ProfileScope scope(ctx, "grouped_linear_bwd", bwd_cost(dx, dweight, dy, x, weight, counts));
  bool dx_done = false, dweight_done = false;
#if TMT_WITH_CUDA
  if (ctx.device == Device::kCuda) {
    dx_done = grouped(ctx, cuda::GroupedPass::kDgrad, dx, dy, weight, counts);
    dweight_done = grouped(ctx, cuda::GroupedPass::kWgrad, dweight, dy, x, counts);
  }
#endif
  if (dx_done && dweight_done) return;
  // The loop, for what the grouped GEMMs did not do: one linear_bwd an expert with rows.
  int64_t row = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    const int64_t n = counts[e];
    if (n > 0) {
      const auto i = static_cast<int64_t>(e);
      linear_bwd(ctx, dx_done ? Tensor{} : dx.slice(row, row + n),
                 dweight_done ? Tensor{} : expert(dweight, i), dy.slice(row, row + n),
                 x.slice(row, row + n), expert(weight, i));
    }
    row += n;
  }
}

}  // namespace tmt
