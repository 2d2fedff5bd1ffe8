// GradSync: a step's gradients made whole across the ranks that share them, and their global norm.
//
// The gradients come in buckets: flat buffers, one per parameter group (trainer/model/params.h),
// each with two kinds of sharing:
//   tp_replicas  consecutive TP ranks that hold the same parameter block and each computed part of
//                its gradient from their own tokens (norms and routers under sequence parallelism:
//                all of TP; replicated kv heads: tp / n_kv_heads of them): summed over them first;
//   replicas     the data-parallel copies (DP for dense parameters, EDP for experts): all-reduced,
//                or with ZeRO-1 reduce-scattered, so that rank i of the group holds shard i
//                [i·n/s, (i+1)·n/s) of the summed gradient (n is padded to a multiple of s).
// The global norm counts every parameter once: each bucket's square is divided by the ranks that
// hold the same values (its TP replicas, and without ZeRO-1 its data-parallel replicas), then
// summed over the world.
//
// begin() starts a step's reductions and finish() completes them and returns the norm. Today
// begin() runs them all, bucket by bucket, after backward; the pair is the seam where bucketed
// reductions overlapped with the backward pass go.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/base/arena.h"
#include "kernels/base/context.h"
#include "parallel/comm.h"

namespace tmt {

struct GradBucket {
  Tensor grads;                      // flat; summed in place (without ZeRO-1)
  int64_t tp_replicas = 1;           // consecutive ranks of the TP group holding the same block
  Communicator* replicas = nullptr;  // DP or EDP
};

class GradSync {
 public:
  // `tp` may be null when no bucket has tp_replicas > 1; `world` spans every rank (for the norm).
  // Collective over tp: makes the sub-groups of tp_replicas ranks.
  GradSync(const Context& ctx, std::vector<GradBucket> buckets, Communicator* tp,
           Communicator* world, bool zero1);

  void begin();
  // The global L2 norm of the summed gradients (every rank gets the same value).
  double finish();

  bool zero1() const { return zero1_; }
  size_t shard_bytes() const { return arena_.capacity(); }  // ZeRO-1's shards (0 without)
  size_t size() const { return buckets_.size(); }
  Communicator* replicas(size_t i) const { return buckets_[i].replicas; }
  // This rank's part of bucket i: [shard_begin, shard_begin + shard_len); the whole bucket
  // without ZeRO-1.
  int64_t shard_begin(size_t i) const { return shards_[i].begin; }
  int64_t shard_len(size_t i) const { return shards_[i].len; }
  // The summed gradient of that part (after finish): bucket i's grads themselves without ZeRO-1.
  const Tensor& summed(size_t i) const { return shards_[i].summed; }

 private:
  struct Shard {
    int64_t begin = 0, len = 0;
    Tensor summed;
    Communicator* tp_group = nullptr;  // the tp_replicas ranks (null: no TP sum)
  };
  Context ctx_;
  std::vector<GradBucket> buckets_;
  std::vector<Shard> shards_;
  std::vector<std::unique_ptr<Communicator>> tp_groups_;  // sub-groups of tp, owned
  Communicator* world_;
  bool zero1_;
  Arena arena_;  // ZeRO-1: the reduce-scattered shards
};

}  // namespace tmt
