// ParamStore: every parameter of this rank's share of the model, with its gradient, in a few flat
// buffers.
//
// Each parameter is declared with its global name and shape and the block of it this rank holds (a
// tensor-parallel or expert-parallel shard is a box: an offset and a size in every dimension).
// After allocate(), values and gradients live in two arenas, laid out in groups — (dense | expert)
// × (decayed | not) × tensor-parallel replication — each contiguous, so the optimizer, the
// gradient norm and the data-parallel all-reduce each work on a handful of flat tensors instead of
// hundreds of small ones.
//
// Mixed precision: the values are the master weights (f32, or f64 for gradient checks) that the
// optimizer updates and checkpoints store, and the gradients accumulate in the same dtype. When
// the model computes in another dtype (bf16), a third arena holds the values' copy in it, laid out
// element for element like the values (weight i sits at the same flat offset as value i), so one
// cast per group refreshes it: sync_weights(), after initialisation and a checkpoint load (the
// optimizer's AdamW pass writes it itself, or casts a group after ZeRO-1's all-gather). Without a
// compute dtype of its own, a parameter's weight is its value.
//
// Buffers (ParamSpec::trainable = false) live after the groups in the values arena, with a
// gradient tensor that nothing writes (zero), and are never cast: their weight is their value.
//
// Initialisation is a pure function of (seed, global name, global element index): a shard draws
// exactly the values the whole tensor would hold there, so every parallel layout starts from the
// same model.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/base/arena.h"

namespace tmt {

enum class ParamKind : uint8_t { kDense, kExpert };  // gradients averaged over DP vs. over EDP
enum class ParamInit : uint8_t { kNormal, kOnes, kZeros };

struct ParamSpec {
  std::string name = {};    // global, e.g. "layers.3.moe.w13"
  Shape global_shape = {};  // the whole tensor
  Shape local_shape = {};   // this rank's block; empty (rank 0) = the whole tensor
  std::array<int64_t, Shape::kMaxDims> offset{};  // where the block starts in the global tensor
  ParamKind kind = ParamKind::kDense;
  bool decay = true;  // AdamW weight decay applies (matrices) or not (norm weights)
  ParamInit init = ParamInit::kNormal;
  double init_std = 0.02;
  // Tensor-parallel ranks that hold this same block and each add a part of its gradient: tp for
  // the norms and the router (each rank sees its share of the tokens), tp / n_kv_heads for wk and
  // wv when kv heads are replicated, else 1.
  int64_t tp_replicas = 1;
  // false: a buffer (the MoE layers' expert bias): stored, initialised and checkpointed (its
  // /param, no moments) like a parameter, but in no group, so no gradient reduction, norm or
  // AdamW touches it; its owner updates `value` (also its `weight`, in any compute dtype).
  bool trainable = true;
  // The weight of a linear or expert GEMM (trainer/model/gemm.h): with train.precision fp8 on cuda
  // its [N, K] (the local shape's last dim K, N the rest, an expert's for kExpert) sizes the FP8
  // scratch (Model::workspace_bytes).
  bool gemm = false;
};

struct Param {
  ParamSpec spec;
  Tensor value;   // the master weights
  Tensor weight;  // what the model computes with: `value`, or its copy in the compute dtype
  Tensor grad;    // the master dtype
};

struct ParamGroup {
  ParamKind kind;
  bool decay;
  int64_t tp_replicas;
  Tensor values;  // flat views over the group's contiguous range
  Tensor weights;
  Tensor grads;
};

class ParamStore {
 public:
  // Declares a parameter (designated initialisers read best: {.name = .., .global_shape = ..,
  // .decay = false, ..}); returns its index. Only before allocate(). Declaring the same name again
  // (the same block) returns the first declaration's index: the pipeline's in-flight copies of a
  // layer share their parameters.
  size_t add(ParamSpec spec);
  // Lays out and zero-allocates values and gradients on `device` in `dtype`, and the weights in
  // `compute` when it differs. Each group's flat length is padded (with zeros) to a multiple of
  // `group_multiple`, so it splits evenly into that many shards (the distributed optimizer's).
  void allocate(Device device, DType dtype, DType compute, int64_t group_multiple = 1);
  // Fills every value from the seed (see the header comment), then the weights.
  void initialize(uint64_t seed);
  // weights = values, rounded to the compute dtype (nothing to do without a copy).
  void sync_weights();
  void sync_weights(size_t group);  // one group's (groups()[group])
  void zero_grads();
  DType compute_dtype() const { return compute_; }

  Param& operator[](size_t i) { return params_[i]; }
  const Param& operator[](size_t i) const { return params_[i]; }
  size_t size() const { return params_.size(); }
  std::vector<Param>& all() { return params_; }
  const std::vector<Param>& all() const { return params_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  int64_t numel() const;
  // The arenas' sizes in bytes: values (buffers included), gradients, the compute-dtype copy.
  size_t values_bytes() const { return values_.capacity(); }
  size_t grads_bytes() const { return grads_.capacity(); }
  size_t weights_bytes() const { return weights_.capacity(); }
  const Param* find(const std::string& name) const;

 private:
  void add_group(ParamKind kind, bool decay, int64_t replicas, DType dtype, int64_t group_multiple);

  std::vector<Param> params_;
  std::vector<ParamGroup> groups_;
  Arena values_;
  Arena grads_;
  Arena weights_;  // empty unless the compute dtype differs from the values'
  DType compute_ = DType::kF32;
};

// The global flat index of local element `i` of a parameter's block (row-major in both).
int64_t global_index(const ParamSpec& spec, int64_t local_flat);

}  // namespace tmt
