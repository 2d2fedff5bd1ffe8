#include "trainer/pipeline/one_f_one_b.h"

#include <algorithm>

#include "kernels/copy.h"

namespace tmt {
namespace {

// Messages are tagged by what they are and the chunk that receives them.
int activation_tag(int64_t chunk) { return static_cast<int>(1 + 2 * chunk); }
int gradient_tag(int64_t chunk) { return static_cast<int>(2 + 2 * chunk); }

// Whether a chunk's passes read the micro-batch's tokens: the embedding's the inputs, the head's
// the targets.
bool reads_tokens(const Model& model, int64_t chunk) {
  return model.holds_embedding(chunk) || model.holds_head(chunk);
}

void await(std::unique_ptr<SendRequest>& request) {
  if (request) request->wait();
  request.reset();
}

}  // namespace

void accumulate(LossParts& sum, const LossParts& p) {
  sum.lm_loss_sum += p.lm_loss_sum;
  sum.lm_tokens += p.lm_tokens;
  sum.aux_loss += p.aux_loss;
  sum.z_loss += p.z_loss;
  sum.dropped += p.dropped;
  if (sum.max_load.empty()) sum.max_load.assign(p.max_load.size(), 0.0);
  for (size_t i = 0; i < p.max_load.size(); ++i)
    sum.max_load[i] = std::max(sum.max_load[i], p.max_load[i]);
  if (sum.expert_load.empty()) sum.expert_load.assign(p.expert_load.size(), 0.0);
  for (size_t i = 0; i < p.expert_load.size(); ++i) sum.expert_load[i] += p.expert_load[i];
}

std::vector<int64_t> OneFOneB::in_flight(int64_t stages, int64_t vpp, int64_t stage,
                                         int64_t micro_batches) {
  if (vpp == 1) return {stages - stage};
  return chunk_in_flight(pipeline_schedule(stages, vpp, stage, micro_batches), vpp);
}

size_t OneFOneB::batch_bytes(const Model& model, int64_t batch, int64_t seq) {
  int64_t slots = 0;
  for (int64_t c = 0; c < model.chunks(); ++c) {
    if (reads_tokens(model, c)) slots += model.chunk_slots(c);
  }
  // Under context parallelism the model reads its chunks of each sequence.
  const int64_t local = seq / model.context_parallel().size();
  return 2 * static_cast<size_t>(slots) * Arena::footprint(DType::kI32, {batch, local});
}

OneFOneB::OneFOneB(Model& model, Communicator* pp, int64_t batch, int64_t seq, Arena& batch_arena)
    : model_(&model), pp_(pp) {
  stages_ = pp != nullptr ? pp->size() : 1;
  stage_ = pp != nullptr ? pp->rank() : 0;
  const int64_t vpp = model.chunks();
  for (int64_t c = 0; c < vpp; ++c) {
    prev_.push_back(pipeline_prev(stages_, vpp, stage_, c));
    next_.push_back(pipeline_next(stages_, vpp, stage_, c));
  }
  TMT_CHECK(stages_ > 1 || vpp == 1, "1F1B: {} model chunks without a pipeline", vpp);
  if (vpp == 1) {
    TMT_CHECK(model.in_flight() >= stages_ - stage_,
              "1F1B: stage {} of {} keeps {} micro-batches, the model has {} slots", stage_,
              stages_, stages_ - stage_, model.in_flight());
  }
  // Tokens for the slots of the chunks that read them; the others' passes get shapes only.
  const auto slots = static_cast<size_t>(model.in_flight());
  std::vector<bool> reads(slots, false);
  for (int64_t c = 0; c < vpp; ++c) {
    for (int64_t k = 0; k < model.chunk_slots(c); ++k) {
      reads[static_cast<size_t>(model.slot(c, k))] = reads_tokens(model, c);
    }
  }
  // The loader fills whole sequences [B, S] on the host; the model reads [B, S / cp].
  const int64_t cp = model.context_parallel().size();
  const auto tokens = [&](Arena& arena, bool held, int64_t len) {
    const Shape shape{batch, len};
    return held ? arena.alloc(DType::kI32, shape)
                : Tensor{nullptr, DType::kI32, arena.device(), shape};
  };
  for (size_t i = 0; i < slots; ++i) {
    batches_.push_back(
        {tokens(batch_arena, reads[i], seq / cp), tokens(batch_arena, reads[i], seq / cp)});
  }
  host_batches_ = batches_;
  if (batch_arena.device() != Device::kCpu || cp > 1) {
    host_arena_ = Arena(Device::kCpu, batch_bytes(model, batch, seq) * static_cast<size_t>(cp),
                        "host batches");
    for (size_t i = 0; i < slots; ++i) {
      host_batches_[i] = {tokens(host_arena_, reads[i], seq), tokens(host_arena_, reads[i], seq)};
    }
  }
  activation_sent_.resize(slots);
  grad_sent_.resize(slots);
}

void OneFOneB::load(int64_t m, const Loader& loader, int64_t chunk, size_t slot) {
  // Only the chunks that read them get them: the first the inputs (the embedding), the last the
  // targets (the loss, which counts them on the host copy).
  const bool inputs = model_->holds_embedding(chunk), targets = model_->holds_head(chunk);
  if (!inputs && !targets) return;
  loader(m, host_batches_[slot]);
  const MicroBatch& host = host_batches_[slot];
  MicroBatch& dev = batches_[slot];
  if (dev.inputs.data == host.inputs.data) return;
  const Context& ctx = model_->context();
  const ContextParallel& cp = model_->context_parallel();
  if (cp.size() > 1) {
    // This rank's two chunks of each sequence; the loss reads the targets back from the model's
    // copy.
    if (inputs) cp.take_chunks(ctx, dev.inputs, host.inputs.ptr<const int32_t>());
    if (targets) cp.take_chunks(ctx, dev.targets, host.targets.ptr<const int32_t>());
    dev.targets_host = nullptr;
    return;
  }
  if (inputs) copy_from_host(ctx, dev.inputs, host.inputs.data);
  if (targets) {
    copy_from_host(ctx, dev.targets, host.targets.data);
    dev.targets_host = host.targets.ptr<const int32_t>();
  }
}

void OneFOneB::forward(const PipelinePass& p, const Loader& loader, LossParts& sum,
                       double lm_grad_scale, double aux_weight) {
  const int64_t slot = slot_of(p);
  const auto i = static_cast<size_t>(slot);
  const auto c = static_cast<size_t>(p.chunk);
  load(p.micro, loader, p.chunk, i);
  await(activation_sent_[i]);  // the slot's activations are about to be overwritten
  if (prev_[c].stage >= 0)
    pp_->recv(model_->stage_input(slot), static_cast<int>(prev_[c].stage), activation_tag(p.chunk));
  accumulate(sum, model_->forward(slot, batches_[i], lm_grad_scale, aux_weight));
  if (next_[c].stage >= 0) {
    activation_sent_[i] = pp_->isend(model_->stage_output(slot), static_cast<int>(next_[c].stage),
                                     activation_tag(next_[c].chunk));
  }
}

void OneFOneB::backward(const PipelinePass& p) {
  const int64_t slot = slot_of(p);
  const auto i = static_cast<size_t>(slot);
  const auto c = static_cast<size_t>(p.chunk);
  await(grad_sent_[i]);
  if (next_[c].stage >= 0)
    pp_->recv(model_->stage_grad(slot), static_cast<int>(next_[c].stage), gradient_tag(p.chunk));
  model_->backward(slot, batches_[i]);
  if (prev_[c].stage >= 0) {
    grad_sent_[i] = pp_->isend(model_->stage_grad(slot), static_cast<int>(prev_[c].stage),
                               gradient_tag(prev_[c].chunk));
  }
}

void OneFOneB::await_all() {
  for (auto& r : activation_sent_) await(r);
  for (auto& r : grad_sent_) await(r);
}

LossParts OneFOneB::train(int64_t micro_batches, const Loader& load, double lm_grad_scale,
                          double aux_weight) {
  const int64_t vpp = model_->chunks();
  const std::vector<PipelinePass> passes = pipeline_schedule(stages_, vpp, stage_, micro_batches);
  if (vpp > 1) {
    const std::vector<int64_t> need = chunk_in_flight(passes, vpp);
    for (int64_t c = 0; c < vpp; ++c) {
      TMT_CHECK(model_->chunk_slots(c) >= need[static_cast<size_t>(c)],
                "interleaved 1F1B: chunk {} of stage {} keeps {} micro-batches of {}, the model "
                "has {} slots",
                c, stage_, need[static_cast<size_t>(c)], micro_batches, model_->chunk_slots(c));
    }
  }
  LossParts sum;
  for (const PipelinePass& p : passes) {
    if (p.forward)
      forward(p, load, sum, lm_grad_scale, aux_weight);
    else
      backward(p);
  }
  await_all();
  return sum;
}

LossParts OneFOneB::evaluate(int64_t micro_batches, const Loader& loader) {
  // Each micro-batch through the chunks in turn, in each chunk's first slot.
  LossParts sum;
  for (int64_t m = 0; m < micro_batches; ++m) {
    for (int64_t c = 0; c < model_->chunks(); ++c) {
      const int64_t slot = model_->slot(c, 0);
      const auto i = static_cast<size_t>(slot);
      const auto ci = static_cast<size_t>(c);
      load(m, loader, c, i);
      await(activation_sent_[i]);
      if (prev_[ci].stage >= 0)
        pp_->recv(model_->stage_input(slot), static_cast<int>(prev_[ci].stage), activation_tag(c));
      accumulate(sum, model_->forward(slot, batches_[i], 0.0, 0.0));
      if (next_[ci].stage >= 0) {
        activation_sent_[i] =
            pp_->isend(model_->stage_output(slot), static_cast<int>(next_[ci].stage),
                       activation_tag(next_[ci].chunk));
      }
    }
  }
  await_all();
  return sum;
}

}  // namespace tmt
