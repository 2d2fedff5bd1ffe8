// How the layers of a model are split over pipeline stages.
#pragma once

#include <cstdint>
#include <vector>

namespace tmt {

struct StageRange {
  int64_t begin = 0;  // first global layer index of the stage
  int64_t end = 0;    // one past the last
};

// `layers_per_stage` (parallel.pp_layers) when given; otherwise as even as possible, the first
// n_layers % pp stages taking one layer more (the last stage also holds the LM head, so it gets
// the lighter share).
std::vector<StageRange> pipeline_stages(int64_t n_layers, int64_t pp,
                                        const std::vector<int64_t>& layers_per_stage);

}  // namespace tmt
