#include "trainer/memory_plan.h"

#include <fmt/format.h>

#include <memory>
#include <numeric>

#include "kernels/base/check.h"
#include "kernels/base/device.h"
#include "parallel/shape_only_comm.h"
#include "trainer/pipeline/one_f_one_b.h"
#include "trainer/pipeline/stages.h"

namespace tmt {

ModelShard model_shard_of(const Recipe& r, int64_t stage, Communicator* tp, Communicator* experts,
                          Communicator* cp) {
  const ParallelConfig& p = r.parallel;
  ModelShard shard{.tp = tp,
                   .experts = experts,
                   .etp = p.etp,
                   .cp = cp,
                   .chunks = {},
                   .shard_multiple = p.zero1 ? std::lcm(p.dp * p.cp, p.edp) : 1};
  const std::vector<StageRange> layers =
      stage_chunks(r.model.n_layers, p.pp, p.vpp, p.pp_layers, stage);
  const std::vector<int64_t> in_flight =
      OneFOneB::in_flight(p.pp, p.vpp, stage, r.train.global_batch / (r.train.micro_batch * p.dp));
  for (size_t c = 0; c < layers.size(); ++c)
    shard.chunks.push_back({.layers = layers[c], .in_flight = in_flight[c]});
  return shard;
}

ModelRun model_run_of(const Recipe& r) {
  std::optional<Fp8Recipe> fp8;
  if (r.train.precision == Precision::kFp8) {
    fp8 = r.fp8.kernel();
    // On cuda the expert dispatch stays bf16 until its row-packing kernels land (PRECISION.md).
    if (r.train.device == Device::kCuda) fp8->dispatch = false;
  }
  return {.dtype = r.train.dtype,
          .micro_batch = r.train.micro_batch,
          .seq_len = r.data.seq_len,
          .seed = r.train.seed,
          .recompute = r.train.recompute,
          .fp8 = fp8};
}

size_t StageMemory::total() const {
  return weights + grads + compute_weights + grad_shards + optimizer + activations + scratch +
         expert_rows + workspace;
}

namespace {

// The stage's model, sized dry; a size past the address space (the recipe's products: its size
// bound is below kMaxRankBytes, so this is rare) is an input error naming the key most
// responsible.
std::unique_ptr<const Model> dry_model(const Recipe& r, const ModelRun& run, const Context& ctx,
                                       const ModelShard& shard) {
  try {
    return std::make_unique<const Model>(r.model, run, ctx, shard);
  } catch (const InputError& e) {
    const SizeBound b = size_bound(r);
    const SizeBound::Blame& blame =
        b.params_bytes >= b.activation_bytes ? b.params_blame : b.activations_blame;
    recipe_error(r, blame.key, fmt::format("{:.6g}: one rank's {}", blame.value, e.what()));
  }
}

}  // namespace

std::vector<StageMemory> plan_memory(const Recipe& r) {
  const ParallelConfig& p = r.parallel;
  ShapeOnlyComm tp(static_cast<int>(p.tp), 0), experts(static_cast<int>(p.etp * p.ep), 0);
  ShapeOnlyComm cp(static_cast<int>(p.cp), 0);
  ModelRun run = model_run_of(r);
  run.dry = true;
  const Context ctx{r.train.device, nullptr};
  std::vector<StageMemory> stages;
  for (int64_t stage = 0; stage < p.pp; ++stage) {
    const ModelShard shard =
        model_shard_of(r, stage, p.tp > 1 ? &tp : nullptr, p.etp * p.ep > 1 ? &experts : nullptr,
                       p.cp > 1 ? &cp : nullptr);
    const std::unique_ptr<const Model> model = dry_model(r, run, ctx, shard);
    const ParamStore& params = model->params();
    StageMemory m;
    m.stage = stage;
    m.layers = model->layers();
    m.in_flight = model->in_flight();
    // The arenas as the parameter store sizes them (alignment and ZeRO-1's padding included).
    m.weights = params.values_bytes();
    m.grads = params.grads_bytes();
    m.compute_weights = params.weights_bytes();
    for (const ParamGroup& g : params.groups()) {
      // GradSync's and the optimizer's share (parallel/grad_sync.cpp, optim/optimizer.cpp): with
      // ZeRO-1 1/(dp·cp) of a dense group, 1/edp of an expert group.
      if (g.kind == ParamKind::kExpert) {
        m.expert_params +=
            g.values.nbytes() + g.grads.nbytes() +
            (g.weights.defined() && g.weights.data != g.values.data ? g.weights.nbytes() : 0);
      }
      const int64_t replicas = g.kind == ParamKind::kDense ? p.dp * p.cp : p.edp;
      const int64_t shard_len = p.zero1 ? g.values.numel() / replicas : g.values.numel();
      if (p.zero1) m.grad_shards += Arena::footprint(g.grads.dtype, {shard_len});
      m.optimizer += 2 * Arena::footprint(DType::kF32, {shard_len});
    }
    m.activations = model->activations_arena_bytes();
    m.scratch = model->scratch_arena_bytes();
    m.expert_rows = model->expert_rows().planned_bytes();
    m.workspace_known = r.train.device == Device::kCpu || usable_gpus(nullptr) > 0;
    if (m.workspace_known) m.workspace = model->workspace_bytes();
    stages.push_back(m);
  }
  return stages;
}

}  // namespace tmt
