// The 1F1B pipeline schedule: one optimizer step's micro-batches through this rank's stage.
//
// Stage s of P runs min(P - s - 1, M) forward passes first (warm-up), then alternates one forward
// and one backward until every micro-batch went forward, then finishes the backward passes. So a
// stage keeps at most P - s micro-batches' activations (the model's in-flight slots; micro-batch
// m lives in slot m mod (P - s)), the last stage only one. Activations go to the next stage and
// gradients come back by point-to-point messages over the PP group; sends do not block (a slot's
// send is awaited before the slot is reused), receives do. With P = 1 it is plain gradient
// accumulation: forward and backward of each micro-batch in turn.
#pragma once

#include <functional>
#include <vector>

#include "trainer/model/model.h"

namespace tmt {

class OneFOneB {
 public:
  // The micro-batches whose activations stage `stage` of `stages` keeps at once: the model's
  // in-flight slots (ModelShard::in_flight) must be at least this many.
  static int64_t in_flight(int64_t stages, int64_t stage) { return stages - stage; }

  // `pp` may be null (one stage). `batch_arena` (on the model's device) provides a batch per
  // in-flight slot.
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
  void forward(int64_t m, const Loader& loader, LossParts& sum, double lm_grad_scale,
               double aux_weight);
  void backward(int64_t m);
  int64_t slot_of(int64_t m) const { return m % model_->in_flight(); }

  Model* model_;
  Communicator* pp_;
  int prev_ = -1, next_ = -1;  // neighbouring stages' ranks in the PP group (-1: none)
  // Micro-batch m into slot `slot`: loaded on the host, then copied to the model's device.
  void load(int64_t m, const Loader& loader, size_t slot);

  std::vector<MicroBatch> batches_;       // what the model reads, on its device
  std::vector<MicroBatch> host_batches_;  // what the loader fills: batches_ themselves on the CPU
  Arena host_arena_;
  std::vector<std::unique_ptr<SendRequest>> activation_sent_, grad_sent_;  // per slot
};

// Adds one micro-batch's loss parts to a running sum.
void accumulate(LossParts& sum, const LossParts& parts);

}  // namespace tmt
