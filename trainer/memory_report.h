// What each rank of a running job holds in memory, by kind, read from its live arenas: the
// counterpart of memory_plan.h's prediction, written to run.dir/memory.json so that a user can
// hold `check --memory` (and the plan) against the run.
//
// memory.json (rank 0 writes it, atomically, after the first step and at the end of the run):
//   {"step": S, "device": "cpu"|"cuda", "ranks": [one object per world rank, in rank order:
//     {"rank", "host", "coords": {"tp", "dp", "pp", "etp", "ep", "edp"}, "layers": [first, end),
//      "bytes": {"weights", "grads", "compute_weights", "grad_shards", "optimizer", "activations",
//                "scratch", "expert_rows", "workspace", "total"},   the arenas as allocated
//      "scratch_peak"         the most of the scratch arena any op has used,
//      "expert_rows_planned"  the MoE rows as planned (expert_rows grows past it when routing is
//                             unbalanced; "expert_rows" is what is held now),
//      "batch"                the micro-batches' token buffers,
//      "device_used"          CUDA only: bytes in use on the rank's GPU (total - free; the CUDA
//                             context and the libraries' workspaces included), else null}]}
// The "bytes" kinds are StageMemory's (memory_plan.h), so `total` compares with the plan directly.
#pragma once

#include <cstdint>
#include <string>

#include "parallel/groups.h"
#include "trainer/memory_plan.h"
#include "trainer/trainer.h"

namespace tmt {

struct RankMemory {
  StageMemory held;  // stage, layers, in_flight and the arenas' sizes
  size_t scratch_peak = 0;
  size_t expert_rows_planned = 0;
  size_t batch = 0;
  size_t device_used = 0;  // 0 on the CPU
};

RankMemory measure_memory(const Trainer& trainer, const ParallelEnv& env);

// Collective over env.world: gathers every rank's RankMemory as JSON and writes
// run_dir/memory.json on world rank 0 (through memory.json.tmp, renamed). A failed write is a
// warning, never the end of the run.
void write_memory_json(const std::string& run_dir, const Trainer& trainer, const ParallelEnv& env,
                       int64_t step);

}  // namespace tmt
