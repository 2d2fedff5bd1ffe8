#include "trainer/pipeline/stages.h"

#include <fmt/format.h>

#include <cstddef>

namespace tmt {

std::vector<StageRange> pipeline_stages(int64_t n_layers, int64_t pp,
                                        const std::vector<int64_t>& layers_per_stage) {
  std::vector<StageRange> stages;
  int64_t begin = 0;
  for (int64_t s = 0; s < pp; ++s) {
    const int64_t n = layers_per_stage.empty() ? n_layers / pp + (s < n_layers % pp ? 1 : 0)
                                               : layers_per_stage[static_cast<size_t>(s)];
    stages.push_back({begin, begin + n});
    begin += n;
  }
  return stages;
}

std::vector<StageRange> stage_chunks(int64_t n_layers, int64_t pp, int64_t vpp,
                                     const std::vector<int64_t>& layers_per_stage, int64_t stage) {
  const std::vector<StageRange> virtual_stages =
      pipeline_stages(n_layers, pp * vpp, layers_per_stage);
  std::vector<StageRange> chunks;
  for (int64_t c = 0; c < vpp; ++c)
    chunks.push_back(virtual_stages[static_cast<size_t>(c * pp + stage)]);
  return chunks;
}

std::string layer_ranges(const std::vector<StageRange>& chunks) {
  std::string out;
  for (const StageRange& c : chunks) {
    out += out.empty() ? "" : ",";
    out += c.end - c.begin == 1 ? fmt::format("{}", c.begin)
                                : fmt::format("{}-{}", c.begin, c.end - 1);
  }
  return out;
}

}  // namespace tmt
