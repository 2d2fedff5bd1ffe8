#include "trainer/pipeline/schedule.h"

#include <algorithm>

#include "kernels/base/check.h"

namespace tmt {

std::vector<PipelinePass> pipeline_schedule(int64_t pp, int64_t vpp, int64_t stage,
                                            int64_t micro_batches) {
  TMT_CHECK(pp >= 1 && vpp >= 1 && stage >= 0 && stage < pp && micro_batches >= 1,
            "pipeline schedule: stage {} of {}, {} chunks, {} micro-batches", stage, pp, vpp,
            micro_batches);
  TMT_CHECK(vpp == 1 || micro_batches % pp == 0,
            "interleaved pipeline: {} micro-batches are not a multiple of {} stages", micro_batches,
            pp);
  const int64_t group = pp * vpp, total = micro_batches * vpp;
  const auto pass = [&](int64_t k, bool forward) {
    const int64_t within = k % group, chunk = within / pp;
    return PipelinePass{.forward = forward,
                        .chunk = forward ? chunk : vpp - 1 - chunk,
                        .micro = k / group * pp + within % pp};
  };
  const int64_t warmup =
      std::min(vpp == 1 ? pp - stage - 1 : 2 * (pp - stage - 1) + (vpp - 1) * pp, total);
  std::vector<PipelinePass> passes;
  passes.reserve(static_cast<size_t>(2 * total));
  int64_t forwards = 0, backwards = 0;
  while (forwards < warmup) passes.push_back(pass(forwards++, true));
  while (forwards < total) {
    passes.push_back(pass(forwards++, true));
    passes.push_back(pass(backwards++, false));
  }
  while (backwards < total) passes.push_back(pass(backwards++, false));
  return passes;
}

namespace {

PipelinePeer virtual_stage(int64_t pp, int64_t vpp, int64_t v) {
  if (v < 0 || v >= pp * vpp) return {};
  return {.stage = v % pp, .chunk = v / pp};
}

}  // namespace

PipelinePeer pipeline_prev(int64_t pp, int64_t vpp, int64_t stage, int64_t chunk) {
  return virtual_stage(pp, vpp, chunk * pp + stage - 1);
}

PipelinePeer pipeline_next(int64_t pp, int64_t vpp, int64_t stage, int64_t chunk) {
  return virtual_stage(pp, vpp, chunk * pp + stage + 1);
}

std::vector<int64_t> chunk_in_flight(const std::vector<PipelinePass>& passes, int64_t vpp) {
  std::vector<int64_t> most(static_cast<size_t>(vpp), 0), now(most);
  for (const PipelinePass& p : passes) {
    const auto c = static_cast<size_t>(p.chunk);
    now[c] += p.forward ? 1 : -1;
    most[c] = std::max(most[c], now[c]);
  }
  return most;
}

}  // namespace tmt
