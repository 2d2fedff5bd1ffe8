#include "trainer/pipeline/one_f_one_b.h"

#include <algorithm>

#include "kernels/copy.h"

namespace tmt {
namespace {

constexpr int kActivationTag = 1;
constexpr int kGradientTag = 2;

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

OneFOneB::OneFOneB(Model& model, Communicator* pp, int64_t batch, int64_t seq, Arena& batch_arena)
    : model_(&model), pp_(pp) {
  const int64_t stages = pp != nullptr ? pp->size() : 1, stage = pp != nullptr ? pp->rank() : 0;
  TMT_CHECK(model.in_flight() >= in_flight(stages, stage),
            "1F1B: stage {} of {} keeps {} micro-batches, the model has {} slots", stage, stages,
            in_flight(stages, stage), model.in_flight());
  if (pp != nullptr && pp->size() > 1) {
    if (!model.first_stage()) prev_ = pp->rank() - 1;
    if (!model.last_stage()) next_ = pp->rank() + 1;
  }
  const auto slots = static_cast<size_t>(model.in_flight());
  for (size_t i = 0; i < slots; ++i) {
    batches_.push_back({batch_arena.alloc(DType::kI32, {batch, seq}),
                        batch_arena.alloc(DType::kI32, {batch, seq})});
  }
  host_batches_ = batches_;
  if (batch_arena.device() != Device::kCpu) {
    host_arena_ = Arena(Device::kCpu, 2 * slots * Arena::footprint(DType::kI32, {batch, seq}),
                        "host batches");
    for (MicroBatch& b : host_batches_) {
      b.inputs = host_arena_.alloc(DType::kI32, {batch, seq});
      b.targets = host_arena_.alloc(DType::kI32, {batch, seq});
    }
  }
  activation_sent_.resize(slots);
  grad_sent_.resize(slots);
}

void OneFOneB::load(int64_t m, const Loader& loader, size_t slot) {
  loader(m, host_batches_[slot]);
  const MicroBatch& host = host_batches_[slot];
  MicroBatch& dev = batches_[slot];
  if (dev.inputs.data == host.inputs.data) return;
  // Only the stages that read them get them: the first the inputs (the embedding), the last the
  // targets (the loss, which counts them on the host copy).
  const Context& ctx = model_->context();
  if (model_->first_stage()) copy_from_host(ctx, dev.inputs, host.inputs.data);
  if (model_->last_stage()) {
    copy_from_host(ctx, dev.targets, host.targets.data);
    dev.targets_host = host.targets.ptr<const int32_t>();
  }
}

void OneFOneB::forward(int64_t m, const Loader& loader, LossParts& sum, double lm_grad_scale,
                       double aux_weight) {
  const int64_t slot = slot_of(m);
  const auto i = static_cast<size_t>(slot);
  load(m, loader, i);
  MicroBatch& batch = batches_[i];
  await(activation_sent_[i]);  // the slot's activations are about to be overwritten
  if (prev_ >= 0) pp_->recv(model_->stage_input(slot), prev_, kActivationTag);
  accumulate(sum, model_->forward(slot, batch, lm_grad_scale, aux_weight));
  if (next_ >= 0)
    activation_sent_[i] = pp_->isend(model_->stage_output(slot), next_, kActivationTag);
}

void OneFOneB::backward(int64_t m) {
  const int64_t slot = slot_of(m);
  const auto i = static_cast<size_t>(slot);
  await(grad_sent_[i]);
  if (next_ >= 0) pp_->recv(model_->stage_grad(slot), next_, kGradientTag);
  model_->backward(slot, batches_[i]);
  if (prev_ >= 0) grad_sent_[i] = pp_->isend(model_->stage_grad(slot), prev_, kGradientTag);
}

LossParts OneFOneB::train(int64_t micro_batches, const Loader& load, double lm_grad_scale,
                          double aux_weight) {
  LossParts sum;
  const int64_t stages = pp_ != nullptr ? pp_->size() : 1;
  const int64_t stage = pp_ != nullptr ? pp_->rank() : 0;
  const int64_t warmup = std::min(stages - stage - 1, micro_batches);
  int64_t forwards = 0, backwards = 0;
  while (forwards < warmup) forward(forwards++, load, sum, lm_grad_scale, aux_weight);
  while (forwards < micro_batches) {
    forward(forwards++, load, sum, lm_grad_scale, aux_weight);
    backward(backwards++);
  }
  while (backwards < micro_batches) backward(backwards++);
  for (auto& r : activation_sent_) await(r);
  for (auto& r : grad_sent_) await(r);
  return sum;
}

LossParts OneFOneB::evaluate(int64_t micro_batches, const Loader& loader) {
  LossParts sum;
  for (int64_t m = 0; m < micro_batches; ++m) {
    load(m, loader, 0);
    MicroBatch& batch = batches_[0];
    await(activation_sent_[0]);
    if (prev_ >= 0) pp_->recv(model_->stage_input(0), prev_, kActivationTag);
    accumulate(sum, model_->forward(0, batch, 0.0, 0.0));
    if (next_ >= 0)
      activation_sent_[0] = pp_->isend(model_->stage_output(0), next_, kActivationTag);
  }
  await(activation_sent_[0]);
  return sum;
}

}  // namespace tmt
