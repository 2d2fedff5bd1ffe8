#include "trainer/pipeline/stages.h"

namespace tmt {

std::vector<StageRange> pipeline_stages(const Recipe& r) {
  const int64_t pp = r.parallel.pp;
  const int64_t layers = r.model.n_layers;
  std::vector<StageRange> stages;
  int64_t begin = 0;
  for (int64_t s = 0; s < pp; ++s) {
    const int64_t n = r.parallel.pp_layers.empty() ? layers / pp + (s < layers % pp ? 1 : 0)
                                                   : r.parallel.pp_layers[static_cast<size_t>(s)];
    stages.push_back({begin, begin + n});
    begin += n;
  }
  return stages;
}

}  // namespace tmt
