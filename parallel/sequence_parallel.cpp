#include "parallel/sequence_parallel.h"

#include "kernels/base/check.h"
#include "kernels/reduce.h"

namespace tmt {

SequenceParallel::SequenceParallel(Communicator* tp, int64_t tokens) : tp_(tp), tokens_(tokens) {
  TMT_CHECK(tokens % size() == 0, "{} tokens do not split over {} tensor-parallel ranks", tokens,
            size());
}

Tensor SequenceParallel::gathered(Arena& arena, const Tensor& chunk) const {
  if (size() == 1) return chunk;
  TMT_CHECK(chunk.shape.rank() == 2 && chunk.size(0) == local_tokens(),
            "sequence parallel: chunk {} is not [{}, width]", chunk.str(), local_tokens());
  return arena.alloc(chunk.dtype, {tokens_, chunk.size(1)});
}

Tensor SequenceParallel::partial(Arena& arena, DType dtype, int64_t width) const {
  if (size() == 1) return Tensor{};
  return arena.alloc(dtype, {tokens_, width});
}

Tensor SequenceParallel::received(Arena& arena, DType dtype, int64_t width) const {
  if (size() == 1) return Tensor{};
  return arena.alloc(dtype, {local_tokens(), width});
}

void SequenceParallel::gather(const Tensor& full, const Tensor& chunk) const {
  if (full.data == chunk.data) return;
  TMT_CHECK(tp_ != nullptr, "sequence parallel: gather into {} from {} with one rank", full.str(),
            chunk.str());
  tp_->all_gather(full, chunk);
}

void SequenceParallel::sum(const Tensor& t) const {
  if (size() > 1) tp_->all_reduce(t);
}

void SequenceParallel::add_chunk(const Context& ctx, const Tensor& chunk, const Tensor& received) {
  add(ctx, chunk, received);
}

}  // namespace tmt
