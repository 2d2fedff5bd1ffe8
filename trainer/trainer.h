// The training loop: for each optimizer step, gradient accumulation over micro-batches, global-norm
// clipping, a NaN/Inf guard, AdamW, validation and metrics.
//
// Which data a step sees depends only on the recipe: sequence j of step s is global sequence number
// s · global_batch + j of the source, and a data-parallel rank takes a contiguous share of them, so
// the same recipe trains on the same tokens at every parallel layout.
#pragma once

#include "trainer/data_sources.h"
#include "trainer/recipe.h"

namespace tmt {

// Trains on the ranks of MPI_COMM_WORLD from checked input; returns the process exit status.
int train(const Recipe& recipe, const DataSources& data);

}  // namespace tmt
