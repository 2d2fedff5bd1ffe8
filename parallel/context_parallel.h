// Context parallelism: each sequence split over the CP ranks (parallel.cp), for long contexts.
//
// A sequence of S tokens is cut into 2·cp chunks of C = S / (2·cp); CP rank i holds chunks i and
// 2·cp - 1 - i, in that order, so that every rank has as much causal attention to compute (an
// early chunk sees few keys, its partner many), as Megatron-Core splits it. Everything but
// attention is token-local and runs on the rank's 2·C tokens of each sequence as if they were the
// whole micro-batch; RoPE takes each token's absolute position (position()).
//
// Attention all-gathers the keys and values of the CP group and puts them back in sequence order
// (the all-gather's rank-major blocks reordered: 2·cp·B copies), then attends with each of its two
// query chunks against the keys up to that chunk's end (kernels/attention.h: queries last,
// bottom-right causal; the sliding window counts from the absolute positions). The backward
// gathers them again rather than keeping them (memory stays per rank 2·C tokens' worth), adds the
// two chunks' key and value gradients in sequence order, and reduce-scatters them back to the
// ranks that own those keys. All-gather rather than a ring: the ring's overlap of the next block's
// transfer with this block's compute needs asynchronous sends the CPU communicator does not
// overlap anyway, and the all-gather's volume is the same ((cp - 1)/cp of the sequence's keys
// and values, per layer, forward and again backward, plus the gradients' reduce-scatter); it
// moves at once what the ring moves in cp - 1 steps.
//
// The kernels take the shorter queries on the CPU and on CUDA alike (cuDNN with its bottom-right
// diagonal, the tensor-core and fp32 kernels with the offset).
//
// With one rank (cp = 1) everything here vanishes: attention is the kernel's, positions are
// 0 .. S-1.
#pragma once

#include <cstdint>

#include "kernels/attention.h"
#include "kernels/base/arena.h"
#include "kernels/base/context.h"
#include "parallel/comm.h"

namespace tmt {

class ContextParallel {
 public:
  ContextParallel() = default;  // one rank
  // `cp` may be null (one rank); `seq` is S, the whole sequence's tokens.
  ContextParallel(Communicator* cp, int64_t seq);

  int64_t size() const { return cp_ != nullptr ? cp_->size() : 1; }
  int64_t rank() const { return cp_ != nullptr ? cp_->rank() : 0; }
  Communicator* group() const { return cp_; }
  int64_t seq() const { return seq_; }                   // S
  int64_t local_seq() const { return seq_ / size(); }    // 2·C: this rank's tokens of each
  int64_t chunk() const { return seq_ / (2 * size()); }  // C
  // The chunk of the sequence that local half `half` (0, 1) of this rank is.
  int64_t chunk_index(int64_t half) const { return half == 0 ? rank() : 2 * size() - 1 - rank(); }
  // The position in its sequence of this rank's local token u (0 .. 2·C - 1).
  int64_t position(int64_t u) const;
  // local i32 [B, 2C] (on ctx's device) = this rank's two chunks of each of the B whole
  // sequences at `whole` (host memory, [B, S]).
  void take_chunks(const Context& ctx, const Tensor& local, const int32_t* whole) const;

  // Attention of this rank's queries over the whole sequences, q [B, 2C, H, Dqk], k [B, 2C, Hk,
  // Dqk], v [B, 2C, Hk, Dv], out [B, 2C, H, Dv], lse (B·H·2C values, laid out [2B, H, C]: each
  // local half its own block); backward writes dq, dk, dv of this rank's tokens (the key and
  // value gradients summed over every rank's queries). The temporaries come from `scratch` and
  // are released on return. At cp = 1: attention_fwd / attention_bwd themselves.
  void attention_fwd(const Context& ctx, Arena& scratch, const Tensor& out, const Tensor& lse,
                     const Tensor& q, const Tensor& k, const Tensor& v,
                     const AttentionParams& params) const;
  void attention_bwd(const Context& ctx, Arena& scratch, const Tensor& dq, const Tensor& dk,
                     const Tensor& dv, const Tensor& dout, const Tensor& q, const Tensor& k,
                     const Tensor& v, const Tensor& out, const Tensor& lse,
                     const AttentionParams& params) const;
  // What those take from the scratch at these shapes, taken (and left taken) from a counting
  // arena: for the layers' sizing.
  void reserve_fwd(Arena& scratch, const Tensor& k, const Tensor& v) const;
  void reserve_bwd(Arena& scratch, const Tensor& k, const Tensor& v) const;
  // The most Context::workspace attention_fwd or attention_bwd take for a micro-batch of
  // `local` (this rank's B sequences of 2·C tokens, kernels/attention.h): at cp = 1 the one call
  // at that shape; else the largest of this rank's calls, C queries against each of its two
  // chunks' key prefixes.
  size_t workspace_bytes(Device device, AttentionShape local, const AttentionParams& params) const;

  // t (host or device) = Σ over the CP ranks of t: statistics of each rank's tokens summed to the
  // whole sequences'. Nothing to do at cp = 1.
  void sum(const Tensor& t) const;

 private:
  struct Temps {
    Tensor gathered_k, gathered_v;  // [cp, B, 2C, Hk, D]: the all-gather's, rank-major
    Tensor k, v;                    // [B, S, Hk, D]: in sequence order
    Tensor dk, dv;                  // [B, S, Hk, D]: summed gradients (backward)
    Tensor dk_call, dv_call;        // [1, S, Hk, D]: one call's (backward)
  };
  Temps temps(Arena& scratch, const Tensor& k, const Tensor& v, bool backward) const;
  // k, v (local) -> t.k, t.v in sequence order.
  void gather(const Context& ctx, const Temps& t, const Tensor& k, const Tensor& v) const;
  // Copies between a rank-major [cp, B, 2C, width] and a sequence-order [B, S, width] buffer,
  // into the one or the other.
  void reorder(const Context& ctx, const Tensor& seq_order, const Tensor& rank_major,
               bool to_sequence_order) const;

  Communicator* cp_ = nullptr;
  int64_t seq_ = 0;
};

}  // namespace tmt
