// SequenceSource: where training sequences come from, as a pure function of their index.
//
// sequence(i) gives seq_len + 1 tokens: the model reads tokens [0, seq_len) and predicts [1,
// seq_len]. Because sequence i is the same whoever asks and whenever, the trainer decides which
// global indices a rank needs (step · global_batch + ...) and the data a step sees is independent
// of the parallel layout — and a resumed run continues with exactly the sequences it would have
// seen.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>

#include "kernels/base/tensor.h"

namespace tmt {

class SequenceSource {
 public:
  virtual ~SequenceSource() = default;
  virtual int64_t seq_len() const = 0;
  // Fills out (seq_len + 1 tokens) with sequence `index` (any index >= 0).
  virtual void sequence(int64_t index, std::span<int32_t> out) const = 0;
  // How many distinct sequences there are (a token split's windows), or 0 for an endless source.
  virtual int64_t count() const { return 0; }
  // The lowest mean loss per predicted token any model can reach on this data (NaN when unknown).
  virtual double optimal_loss() const { return std::nan(""); }
  virtual std::string describe() const = 0;
  // Throws InputError naming the file when data the source reads from has changed since it was
  // opened (shard.h); sources without files have nothing to check.
  virtual void check_unchanged() const {}
};

// Fills inputs and targets (i32 [B, S] host tensors) with sequences first_index .. first_index + B
// - 1.
void fill_batch(const SequenceSource& source, int64_t first_index, const Tensor& inputs,
                const Tensor& targets);

}  // namespace tmt
