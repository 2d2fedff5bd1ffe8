// `tramontane plan --search`: every layout of a recipe for N GPUs that its rules accept, estimated
// with the step model (step_estimate.h) and ranked by predicted tokens/s among those that fit.
//
// The space, for N GPUs of a hardware kind with an NVLink domain of K:
//   tp          powers of two up to min(K, 8), dividing n_heads (tensor parallelism off the
//               NVLink domain is never a good trade, and 8 is as far as Megatron-Core takes it)
//   cp          1, and the powers of two that leave each rank kMinCpTokens of every sequence or
//               more (context parallelism pays off on long sequences only: below that its
//               all-gathers and short attention chunks cost more than the memory it saves)
//   pp          every divisor of N / (tp · cp) up to n_layers (uneven splits allowed, as the
//               trainer does)
//   vpp         1, 2, 4 model chunks per stage when pp > 1 (interleaved 1F1B: the bubble / vpp
//               for vpp times the pipeline messages and more activations in flight)
//   ep          every divisor of n_experts that divides tp · cp · dp (1 for a dense model)
//   etp         1, or tp when the expert hidden size divides (Megatron's two usual choices)
//   zero1       off, on
//   micro_batch 1, 2, 4, 8 dividing the global batch over dp
//   recompute   none, selective, full (train.recompute: each slower and smaller than the one
//               before, so a recompute mode ranks only where it makes a faster layout fit)
// Each candidate is the recipe with those keys set (parallel.dp and parallel.pp_layers left to
// derive), read back through every rule, so a layout the trainer would refuse is never ranked.
// The estimate is cheap; memory (a dry model per stage) is sized best-first until `keep` layouts
// that fit are found.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "trainer/plan/step_estimate.h"

namespace tmt {

// The fewest tokens of a sequence a CP rank is left with in the search.
inline constexpr int64_t kMinCpTokens = 4096;

struct LayoutCandidate {
  std::vector<std::string> sets;  // the keys set, as --set arguments ("parallel.tp=2", ...)
  Recipe recipe;                  // resolved for the GPUs
  StepEstimate estimate;          // memory included when `sized`
  bool sized = false;
};

struct LayoutSearch {
  std::vector<LayoutCandidate> ranked;  // fitting layouts, fastest first, at most `keep`
  int64_t considered = 0;               // layouts enumerated
  int64_t refused = 0;                  // refused by the recipe's rules (with the reason dropped)
  int64_t too_large = 0;                // sized and over the device's memory
};

// `make(sets)` reads the recipe with `sets` applied and resolves it for `gpus` ranks, throwing
// InputError when a rule refuses it.
using RecipeMaker = std::function<Recipe(const std::vector<std::string>& sets)>;

LayoutSearch search_layouts(const Recipe& base, const RecipeMaker& make, int64_t gpus,
                            const Hardware& hw, const PlanAssumptions& a, int64_t keep);

}  // namespace tmt
