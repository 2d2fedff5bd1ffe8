#include "trainer/pipeline/stages.h"

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

}  // namespace tmt
