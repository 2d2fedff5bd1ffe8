// The recipe's data: the training and validation sequence sources it names.
#pragma once

#include <memory>

#include "data/sequence_source.h"
#include "trainer/recipe/recipe.h"

namespace tmt {

struct DataSources {
  std::unique_ptr<SequenceSource> train;
  std::unique_ptr<SequenceSource> val;  // null when there is no validation data
};

// synthetic: one Markov chain; training and validation sample it with different seeds.
// shards: data.paths shuffled per epoch from train.seed; validation from data.val_paths, or else
// from a `val` directory beside each `train` directory in data.paths (the layout `tramontane
// prepare` writes). Throws InputError for bad or missing data.
DataSources open_data(const Recipe& recipe);

}  // namespace tmt
