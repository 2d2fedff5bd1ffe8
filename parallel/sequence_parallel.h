// Sequence parallelism: the tensor-parallel group's two moves around a layer (the role of
// Megatron's column- and row-parallel linears with sequence parallelism).
//
// Between the blocks each TP rank holds a contiguous chunk of T / tp of the micro-batch's T tokens
// (rows r·T/tp ..). A column-parallel product (QKV, W13, the LM head) needs the whole sequence: the
// chunk is all-gathered to [T, width] first. A row-parallel product (Wo, W2, the embedding's rows,
// the input gradients of column-parallel ones) gives every rank a partial sum [T, width]: it is
// reduce-scattered back to the chunks.
//
// With one rank (tp = 1) both moves vanish rather than copy: gathered() is the chunk itself, so
// gather() has nothing to do, and reduce_scatter / reduce_scatter_add hand the chunk to the product
// to write or accumulate into directly. So a layer reads as one path at every tp.
//
// The buffers the moves need under tp > 1 come from the caller's arena (gathered(), partial(),
// received()); at tp = 1 they take nothing.
#pragma once

#include <cstdint>

#include "kernels/base/arena.h"
#include "kernels/base/context.h"
#include "parallel/comm.h"

namespace tmt {

class SequenceParallel {
 public:
  SequenceParallel() = default;  // one rank
  // `tp` may be null (one rank); `tokens` is T, the whole micro-batch.
  SequenceParallel(Communicator* tp, int64_t tokens);

  int64_t size() const { return tp_ != nullptr ? tp_->size() : 1; }
  int64_t rank() const { return tp_ != nullptr ? tp_->rank() : 0; }
  int64_t tokens() const { return tokens_; }                 // T
  int64_t local_tokens() const { return tokens_ / size(); }  // T / tp, this rank's chunk
  Communicator* group() const { return tp_; }

  // The buffer gather() fills for `chunk` [T/tp, width]: [T, width] from `arena`, or at tp = 1 the
  // chunk itself.
  Tensor gathered(Arena& arena, const Tensor& chunk) const;
  // A row-parallel product's partial sum [T, width] (reduce_scatter, reduce_scatter_add), and the
  // chunk [T/tp, width] its reduced rows land in before they are added (reduce_scatter_add): from
  // `arena`, or at tp = 1 nothing (an empty tensor).
  Tensor partial(Arena& arena, DType dtype, int64_t width) const;
  Tensor received(Arena& arena, DType dtype, int64_t width) const;

  // full [T, width] = the TP ranks' chunks in rank order; nothing to do when full is chunk.
  void gather(const Tensor& full, const Tensor& chunk) const;

  // chunk [T/tp, width] = this rank's rows of Σ_tp P, where product(out) writes P [T, width] into
  // out. At tp = 1, product(chunk).
  template <class Product>
  void reduce_scatter(const Tensor& chunk, const Tensor& partial, Product&& product) const {
    if (size() == 1) return product(chunk);
    product(partial);
    tp_->reduce_scatter(chunk, partial);
  }

  // chunk += this rank's rows of Σ_tp P, where product(out, accumulate) writes P (or, with
  // accumulate, adds it) into out. At tp = 1, product(chunk, true).
  template <class Product>
  void reduce_scatter_add(const Context& ctx, const Tensor& chunk, const Tensor& partial,
                          const Tensor& received, Product&& product) const {
    if (size() == 1) return product(chunk, true);
    product(partial, false);
    tp_->reduce_scatter(received, partial);
    add_chunk(ctx, chunk, received);
  }

  // t (host or device) = Σ over the TP ranks of t: statistics of each rank's chunk summed to the
  // whole micro-batch's. Nothing to do at tp = 1.
  void sum(const Tensor& t) const;

 private:
  static void add_chunk(const Context& ctx, const Tensor& chunk, const Tensor& received);

  Communicator* tp_ = nullptr;
  int64_t tokens_ = 0;
};

}  // namespace tmt
