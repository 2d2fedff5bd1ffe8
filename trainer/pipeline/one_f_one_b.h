// The 1F1B pipeline schedule, plain or interleaved: one optimizer step's micro-batches through
// this rank's stage, in the order pipeline/schedule.h gives.
//
// Plain (one model chunk per rank): stage s of P runs min(P - s - 1, M) forward passes first
// (warm-up), then alternates one forward and one backward until every micro-batch went forward,
// then finishes the backward passes. So a stage keeps at most P - s micro-batches' activations
// (the model's in-flight slots; micro-batch m lives in slot m mod (P - s)), the last stage only
// one. Interleaved (parallel.vpp chunks per rank): chunk c of rank s is virtual stage c·P + s, so
// activations go from rank s to s + 1 in a chunk and from the last rank to rank 0 between chunks
// (gradients the other way); each chunk keeps as many micro-batches as the order needs
// (chunk_in_flight). Activations go to the next stage and gradients come back by point-to-point
// messages over the PP group, tagged by the receiving chunk; sends do not block (a slot's send is
// awaited before the slot is reused), receives do. With P = 1 it is plain gradient accumulation:
// forward and backward of each micro-batch in turn.
#pragma once

#include <functional>
#include <vector>

#include "trainer/model/model.h"
#include "trainer/pipeline/schedule.h"

namespace tmt {

class OneFOneB {
 public:
  // Per chunk, the micro-batches whose activations stage `stage` of `stages` keeps at once with
  // `vpp` chunks a rank and `micro_batches` a step: the model's slots (ModelChunk::in_flight)
  // must be at least these. Plain 1F1B keeps stages - stage whatever the micro-batches.
  static std::vector<int64_t> in_flight(int64_t stages, int64_t vpp, int64_t stage,
                                        int64_t micro_batches);

  // The bytes of the batches: inputs and targets for each slot of the chunks that read them
  // (the embedding's and the head's).
  static size_t batch_bytes(const Model& model, int64_t batch, int64_t seq);
  // `pp` may be null (one stage). `batch_arena` (on the model's device) holds batch_bytes.
  OneFOneB(Model& model, Communicator* pp, int64_t batch, int64_t seq, Arena& batch_arena);

  // Loads micro-batch m (0 ..) of the step into `batch`, always host memory (the schedule copies
  // it to the model's device).
  using Loader = std::function<void(int64_t m, MicroBatch& batch)>;

  // Forward and backward of `micro_batches` micro-batches; gradients accumulate in the model.
  // Returns this stage's loss parts summed over the micro-batches.
  LossParts train(int64_t micro_batches, const Loader& load, double lm_grad_scale,
                  double aux_weight);
  // Forward only (validation); the loss parts are the last stage's.
  LossParts evaluate(int64_t micro_batches, const Loader& load);

 private:
  void forward(const PipelinePass& p, const Loader& loader, LossParts& sum, double lm_grad_scale,
               double aux_weight);
  void backward(const PipelinePass& p);
  int64_t slot_of(const PipelinePass& p) const {
    return model_->slot(p.chunk, p.micro % model_->chunk_slots(p.chunk));
  }
  // Micro-batch m into slot `slot` of chunk `chunk`: loaded on the host, then copied to the
  // model's device (only for the chunks that read them).
  void load(int64_t m, const Loader& loader, int64_t chunk, size_t slot);
  void await_all();

  Model* model_;
  Communicator* pp_;
  int64_t stages_ = 1, stage_ = 0;
  std::vector<PipelinePeer> prev_, next_;  // per chunk: the ranks in the PP group

  std::vector<MicroBatch> batches_;       // what the model reads, on its device (per slot)
  std::vector<MicroBatch> host_batches_;  // what the loader fills: batches_ themselves on the CPU
  Arena host_arena_;
  std::vector<std::unique_ptr<SendRequest>> activation_sent_, grad_sent_;  // per slot
};

// Adds one micro-batch's loss parts to a running sum.
void accumulate(LossParts& sum, const LossParts& parts);

}  // namespace tmt
