// The learning rate at each optimizer step (0-based), from schedule.* and optimizer.lr.
//
//   warmup   step < W:          lr · (step + 1) / W
//   then, with progress p = (step - W) / (steps - W) in [0, 1):
//     cosine                    min_lr + (lr - min_lr) · ½ (1 + cos(π p))
//     linear                    lr - (lr - min_lr) · p
//     constant                  lr
//     wsd (warmup-stable-decay) lr until the last ⌈wsd_decay_fraction · steps⌉ steps, then
//                               linear down to min_lr over them
//
// A warmup longer than the run (W > steps) is allowed: the run ends inside the warmup, and the
// learning rate never reaches lr (its last value is lr · steps / W).
#pragma once

#include <cstdint>

#include "trainer/recipe/recipe.h"

namespace tmt {

double learning_rate(const Recipe& recipe, int64_t step);

}  // namespace tmt
