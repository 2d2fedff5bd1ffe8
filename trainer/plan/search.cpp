#include "trainer/plan/search.h"

#include <fmt/format.h>

#include <algorithm>

#include "kernels/base/check.h"

namespace tmt {
namespace {

std::vector<int64_t> divisors(int64_t n, int64_t at_most) {
  std::vector<int64_t> out;
  for (int64_t d = 1; d <= std::min(n, at_most); ++d) {
    if (n % d == 0) out.push_back(d);
  }
  return out;
}

}  // namespace

LayoutSearch search_layouts(const Recipe& base, const RecipeMaker& make, int64_t gpus,
                            const Hardware& hw, const PlanAssumptions& a, int64_t keep) {
  const ModelConfig& m = base.model;
  const int64_t domain = a.nvlink_domain > 0 ? a.nvlink_domain : hw.nvlink_domain;
  LayoutSearch out;
  std::vector<LayoutCandidate> valid;
  // Context parallelism where each rank still holds kMinCpTokens of a sequence.
  std::vector<int64_t> cps = {1};
  for (int64_t cp = 2; base.data.seq_len / cp >= kMinCpTokens; cp *= 2) cps.push_back(cp);
  for (int64_t tp = 1; tp <= std::min<int64_t>(domain, 8); tp *= 2) {
    if (gpus % tp != 0 || m.n_heads % tp != 0) continue;
    for (const int64_t cp : cps) {
      if ((gpus / tp) % cp != 0) continue;
      for (const int64_t pp : divisors(gpus / (tp * cp), m.n_layers)) {
        const int64_t dp = gpus / (tp * cp * pp);
        const std::vector<int64_t> eps =
            m.moe ? divisors(m.moe->n_experts, tp * cp * dp) : std::vector<int64_t>{1};
        for (const int64_t ep : eps) {
          if ((tp * cp * dp) % ep != 0) continue;
          std::vector<int64_t> etps = {1};
          if (m.moe && tp > 1) etps.push_back(tp);
          for (const int64_t etp : etps) {
            for (const int64_t vpp :
                 pp > 1 ? std::vector<int64_t>{1, 2, 4} : std::vector<int64_t>{1}) {
              for (const bool zero1 : {false, true}) {
                for (const int64_t micro : {1, 2, 4, 8}) {
                  for (const char* recompute : {"none", "selective", "full"}) {
                    ++out.considered;
                    LayoutCandidate c;
                    c.sets = {fmt::format("parallel.tp={}", tp),
                              fmt::format("parallel.cp={}", cp),
                              fmt::format("parallel.pp={}", pp),
                              fmt::format("parallel.vpp={}", vpp),
                              "parallel.dp=null",
                              "parallel.pp_layers=null",
                              fmt::format("parallel.ep={}", ep),
                              fmt::format("parallel.etp={}", etp),
                              fmt::format("parallel.zero1={}", zero1 ? "true" : "false"),
                              fmt::format("train.micro_batch={}", micro),
                              fmt::format("train.recompute={}", recompute)};
                    try {
                      c.recipe = make(c.sets);
                    } catch (const InputError&) {
                      ++out.refused;
                      continue;
                    }
                    c.estimate = estimate_step(c.recipe, hw, a, /*size_memory=*/false);
                    valid.push_back(std::move(c));
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  std::stable_sort(valid.begin(), valid.end(), [](const auto& x, const auto& y) {
    return x.estimate.tokens_per_s > y.estimate.tokens_per_s;
  });
  for (LayoutCandidate& c : valid) {
    if (static_cast<int64_t>(out.ranked.size()) >= keep) break;
    c.estimate = estimate_step(c.recipe, hw, a);
    c.sized = true;
    if (!c.estimate.fits) {
      ++out.too_large;
      continue;
    }
    out.ranked.push_back(std::move(c));
  }
  return out;
}

}  // namespace tmt
