// The order of one optimizer step's passes on a pipeline stage: 1F1B, and its interleaved form
// when each rank holds several model chunks (parallel.vpp, "virtual stages").
//
// With vpp chunks per rank the layers are split into pp·vpp virtual stages in model order, and
// rank s holds virtual stages s, s + pp, s + 2·pp, .. (chunk c of rank s is virtual stage
// c·pp + s): a micro-batch goes through every rank vpp times. The passes are taken in groups of
// pp micro-batches per chunk, as Megatron-Core's interleaved schedule does: the k-th forward of a
// rank is chunk (k mod pp·vpp) / pp of micro-batch ⌊k / (pp·vpp)⌋·pp + k mod pp, the k-th
// backward the same micro-batch in chunk vpp - 1 - that chunk. Stage s runs
// min(2·(pp - s - 1) + (vpp - 1)·pp, m·vpp) forwards first (warm-up), then alternates one
// forward and one backward, then finishes the backwards. With vpp = 1 this is plain 1F1B (warm-up
// pp - s - 1). Interleaving needs m to be a multiple of pp (layout.cpp says so).
//
// The idle time a step pays for filling and draining the pipeline (the bubble) is
// (pp - 1)/(vpp·m) of the work, against (pp - 1)/m for 1F1B; pipeline_schedule_test checks that
// by simulation, scripts/bench/pipeline_bubble measures it. The price is memory: stage 0 keeps up
// to m·vpp micro-batch chunks' activations during warm-up where 1F1B keeps pp stages' worth.
#pragma once

#include <cstdint>
#include <vector>

namespace tmt {

struct PipelinePass {
  bool forward = true;  // false: backward
  int64_t chunk = 0;    // of this rank's chunks, 0 .. vpp-1 (model order)
  int64_t micro = 0;    // the micro-batch, 0 .. m-1
};

// Stage `stage` of `pp`'s passes of one step of `micro_batches` micro-batches, in order.
std::vector<PipelinePass> pipeline_schedule(int64_t pp, int64_t vpp, int64_t stage,
                                            int64_t micro_batches);

// The neighbours of chunk `chunk` of stage `stage` (virtual stage chunk·pp + stage): the stage
// and chunk of the virtual stage before it (whose activations it receives) and after it (to which
// it sends); stage -1 where there is none (the model's first and last virtual stages).
struct PipelinePeer {
  int64_t stage = -1;
  int64_t chunk = 0;
};
PipelinePeer pipeline_prev(int64_t pp, int64_t vpp, int64_t stage, int64_t chunk);
PipelinePeer pipeline_next(int64_t pp, int64_t vpp, int64_t stage, int64_t chunk);

// Per chunk: the most micro-batches whose activations the order keeps at once (forward run,
// backward not yet). A chunk's micro-batches go forward and backward in increasing order, so
// micro-batch m can live in slot m mod that count.
std::vector<int64_t> chunk_in_flight(const std::vector<PipelinePass>& passes, int64_t vpp);

}  // namespace tmt
