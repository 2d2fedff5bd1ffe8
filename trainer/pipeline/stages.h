// How the layers of a model are split over pipeline stages.
#pragma once

#include <cstdint>
#include <string>
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

// The model chunks rank `stage` of `pp` holds with `vpp` chunks per rank (parallel.vpp): virtual
// stages stage, stage + pp, .. of the layers split over pp·vpp virtual stages (pipeline_stages,
// `layers_per_stage` one entry per virtual stage). With vpp = 1 the stage's one range.
// "0-3", or one range per chunk: "0-1,4-5", "0,2" (inclusive, as people count layers).
std::string layer_ranges(const std::vector<StageRange>& chunks);

std::vector<StageRange> stage_chunks(int64_t n_layers, int64_t pp, int64_t vpp,
                                     const std::vector<int64_t>& layers_per_stage, int64_t stage);

}  // namespace tmt
