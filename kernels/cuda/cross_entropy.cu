// cross_entropy on CUDA (formulas in kernels/cross_entropy.h). fp32 arithmetic throughout.
//
// Fused op: one block per row, two sweeps over the row in chunks of blockDim elements, and no
// copy of the row anywhere:
//   1. each thread keeps an online (max, sum of exp) pair over its elements (the sum is rescaled
//      when the max grows); the block merges the pairs into the row's max and sum; the target's
//      logit is read here, before any gradient is written (dlogits may alias logits);
//   2. loss = log(sum) + max - logit[target]; dlogits = grad_scale * (exp(x - max) / sum - onehot),
//      each element read and written by the same thread.
// A row whose target is < 0 gets loss 0 and a zero gradient row. A target >= V is a broken
// invariant: the kernel traps, and the next CUDA call on the stream fails (fatal).
//
// Vocab-parallel pieces: row_max, sum_exp and grad are one block per row as above; target_logit
// and loss are one thread per row.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cross_entropy.h"

namespace tmt::cuda {
namespace {

constexpr int kRowThreads = 512;

// (max, sum of exp(x - max)) over some set of logits; the empty set is (-inf, 0).
struct MaxSum {
  float max;
  float sum;
};

__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.max, b.max);
  if (m == -INFINITY) return {m, 0.0f};  // both empty (or all -inf): avoid -inf - -inf
  return {m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
}

__device__ MaxSum block_merge(MaxSum v) {
  __shared__ MaxSum partial[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
  for (int offset = 16; offset > 0; offset /= 2) {
    const MaxSum other{__shfl_xor_sync(kFullMask, v.max, offset),
                       __shfl_xor_sync(kFullMask, v.sum, offset)};
    v = merge(v, other);
  }
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < n_warps ? partial[lane] : MaxSum{-INFINITY, 0.0f};
  for (int offset = 16; offset > 0; offset /= 2) {
    const MaxSum other{__shfl_xor_sync(kFullMask, v.max, offset),
                       __shfl_xor_sync(kFullMask, v.sum, offset)};
    v = merge(v, other);
  }
  return v;
}

// dst[v] = scale * (exp(src[v] - max) / sum - [v == hot]) over one row; dst may be src.
template <class T>
__device__ void write_grad_row(T* dst, const T* src, int64_t n, float max, float sum, int64_t hot,
                               float scale) {
  const float inv_sum = 1.0f / sum;
  for (int64_t v = threadIdx.x; v < n; v += blockDim.x) {
    const float p = expf(to_math(src[v]) - max) * inv_sum;
    dst[v] = from_math<T>(scale * (v == hot ? p - 1.0f : p));
  }
}

template <class T>
__device__ void zero_row(T* dst, int64_t n) {
  for (int64_t v = threadIdx.x; v < n; v += blockDim.x) dst[v] = from_math<T>(0.0f);
}

// logits, dlogits: [T, V] (dlogits nullptr: losses only); losses, targets: [T].
template <class T>
__global__ void fused_kernel(StatVector losses, T* dlogits, const T* logits, const int32_t* targets,
                             int64_t n_vocab, float grad_scale) {
  const int64_t row = blockIdx.x;
  const T* x = logits + row * n_vocab;
  T* dx = dlogits == nullptr ? nullptr : dlogits + row * n_vocab;
  const int64_t y = targets[row];
  if (y >= n_vocab) __trap();
  if (y < 0) {  // the whole block takes this branch
    if (threadIdx.x == 0) losses.store(row, 0.0f);
    if (dx != nullptr) zero_row(dx, n_vocab);
    return;
  }
  MaxSum acc{-INFINITY, 0.0f};
  for (int64_t v = threadIdx.x; v < n_vocab; v += blockDim.x) {
    const float xv = to_math(x[v]);
    if (xv > acc.max) {
      acc.sum = acc.sum * expf(acc.max - xv) + 1.0f;
      acc.max = xv;
    } else {
      acc.sum += expf(xv - acc.max);
    }
  }
  const float target_logit = to_math(x[y]);  // read before block_merge's barriers
  acc = block_merge(acc);
  if (threadIdx.x == 0) losses.store(row, logf(acc.sum) + acc.max - target_logit);
  if (dx != nullptr) write_grad_row(dx, x, n_vocab, acc.max, acc.sum, y, grad_scale);
}

template <class T>
__global__ void row_max_kernel(StatVector row_max, const T* logits, int64_t n_vocab) {
  const T* x = logits + blockIdx.x * n_vocab;
  float m = -INFINITY;
  for (int64_t v = threadIdx.x; v < n_vocab; v += blockDim.x) m = fmaxf(m, to_math(x[v]));
  m = block_max(m);
  if (threadIdx.x == 0) row_max.store(blockIdx.x, m);
}

template <class T>
__global__ void sum_exp_kernel(StatVector sum_exp, const T* logits, StatVector row_max,
                               int64_t n_vocab) {
  const T* x = logits + blockIdx.x * n_vocab;
  const float m = row_max.load(blockIdx.x);
  float s = 0.0f;
  for (int64_t v = threadIdx.x; v < n_vocab; v += blockDim.x) s += expf(to_math(x[v]) - m);
  s = block_sum(s);
  if (threadIdx.x == 0) sum_exp.store(blockIdx.x, s);
}

template <class T>
__global__ void target_logit_kernel(StatVector target_logit, const T* logits,
                                    const int32_t* targets, int64_t n_tokens, int64_t n_vocab,
                                    int64_t vocab_start) {
  for (int64_t t = global_thread(); t < n_tokens; t += grid_threads()) {
    const int64_t col = static_cast<int64_t>(targets[t]) - vocab_start;
    const bool here = targets[t] >= 0 && col >= 0 && col < n_vocab;
    target_logit.store(t, here ? to_math(logits[t * n_vocab + col]) : 0.0f);
  }
}

__global__ void loss_kernel(StatVector losses, StatVector row_max, StatVector sum_exp,
                            StatVector target_logit, const int32_t* targets, int64_t n_tokens) {
  for (int64_t t = global_thread(); t < n_tokens; t += grid_threads()) {
    const float loss = logf(sum_exp.load(t)) + row_max.load(t) - target_logit.load(t);
    losses.store(t, targets[t] < 0 ? 0.0f : loss);
  }
}

template <class T>
__global__ void grad_kernel(T* dlogits, const T* logits, const int32_t* targets, StatVector row_max,
                            StatVector sum_exp, int64_t n_vocab, int64_t vocab_start,
                            float grad_scale) {
  const int64_t row = blockIdx.x;
  T* dx = dlogits + row * n_vocab;
  if (targets[row] < 0) return zero_row(dx, n_vocab);
  // A target on another shard gives a hot index outside [0, V_local): no one-hot here.
  const int64_t hot = static_cast<int64_t>(targets[row]) - vocab_start;
  write_grad_row(dx, logits + row * n_vocab, n_vocab, row_max.load(row), sum_exp.load(row), hot,
                 grad_scale);
}

template <class T>
const T* in(const Tensor& t) {
  return static_cast<const T*>(t.data);
}
const int32_t* ids(const Tensor& t) { return static_cast<const int32_t*>(t.data); }
unsigned rows(const Tensor& logits) { return static_cast<unsigned>(logits.size(0)); }

template <class T>
void fused_as(const Context& ctx, const Tensor& losses, const Tensor& dlogits, const Tensor& logits,
              const Tensor& targets, double grad_scale) {
  T* dx = dlogits.defined() ? static_cast<T*>(dlogits.data) : nullptr;
  fused_kernel<T><<<rows(logits), kRowThreads, 0, stream_of(ctx)>>>(
      stat_vector(losses), dx, in<T>(logits), ids(targets), logits.size(1),
      static_cast<float>(grad_scale));
  TMT_CUDA_CHECK_LAUNCH();
}

template <class T>
void row_max_as(const Context& ctx, const Tensor& row_max, const Tensor& logits) {
  row_max_kernel<T><<<rows(logits), kRowThreads, 0, stream_of(ctx)>>>(
      stat_vector(row_max), in<T>(logits), logits.size(1));
  TMT_CUDA_CHECK_LAUNCH();
}

template <class T>
void sum_exp_as(const Context& ctx, const Tensor& sum_exp, const Tensor& logits,
                const Tensor& row_max) {
  sum_exp_kernel<T><<<rows(logits), kRowThreads, 0, stream_of(ctx)>>>(
      stat_vector(sum_exp), in<T>(logits), stat_vector(row_max), logits.size(1));
  TMT_CUDA_CHECK_LAUNCH();
}

template <class T>
void target_logit_as(const Context& ctx, const Tensor& target_logit, const Tensor& logits,
                     const Tensor& targets, int64_t vocab_start) {
  const int64_t n_tokens = logits.size(0);
  target_logit_kernel<T><<<grid_for(n_tokens), kThreads, 0, stream_of(ctx)>>>(
      stat_vector(target_logit), in<T>(logits), ids(targets), n_tokens, logits.size(1),
      vocab_start);
  TMT_CUDA_CHECK_LAUNCH();
}

template <class T>
void grad_as(const Context& ctx, const Tensor& dlogits, const Tensor& logits, const Tensor& targets,
             const Tensor& row_max, const Tensor& sum_exp, int64_t vocab_start, double grad_scale) {
  grad_kernel<T><<<rows(logits), kRowThreads, 0, stream_of(ctx)>>>(
      static_cast<T*>(dlogits.data), in<T>(logits), ids(targets), stat_vector(row_max),
      stat_vector(sum_exp), logits.size(1), vocab_start, static_cast<float>(grad_scale));
  TMT_CUDA_CHECK_LAUNCH();
}

bool is_bf16(const Tensor& logits) { return logits.dtype == DType::kBF16; }

}  // namespace

void cross_entropy(const Context& ctx, const Tensor& losses, const Tensor& dlogits,
                   const Tensor& logits, const Tensor& targets, double grad_scale) {
  if (logits.size(0) == 0) return;
  if (is_bf16(logits)) return fused_as<bf16>(ctx, losses, dlogits, logits, targets, grad_scale);
  fused_as<float>(ctx, losses, dlogits, logits, targets, grad_scale);
}

void cross_entropy_row_max(const Context& ctx, const Tensor& row_max, const Tensor& logits) {
  if (logits.size(0) == 0) return;
  if (is_bf16(logits)) return row_max_as<bf16>(ctx, row_max, logits);
  row_max_as<float>(ctx, row_max, logits);
}

void cross_entropy_sum_exp(const Context& ctx, const Tensor& sum_exp, const Tensor& logits,
                           const Tensor& row_max) {
  if (logits.size(0) == 0) return;
  if (is_bf16(logits)) return sum_exp_as<bf16>(ctx, sum_exp, logits, row_max);
  sum_exp_as<float>(ctx, sum_exp, logits, row_max);
}

void cross_entropy_target_logit(const Context& ctx, const Tensor& target_logit,
                                const Tensor& logits, const Tensor& targets, int64_t vocab_start) {
  if (logits.size(0) == 0) return;
  if (is_bf16(logits)) {
    return target_logit_as<bf16>(ctx, target_logit, logits, targets, vocab_start);
  }
  target_logit_as<float>(ctx, target_logit, logits, targets, vocab_start);
}

void cross_entropy_loss(const Context& ctx, const Tensor& losses, const Tensor& row_max,
                        const Tensor& sum_exp, const Tensor& target_logit, const Tensor& targets) {
  const int64_t n_tokens = losses.size(0);
  if (n_tokens == 0) return;
  loss_kernel<<<grid_for(n_tokens), kThreads, 0, stream_of(ctx)>>>(
      stat_vector(losses), stat_vector(row_max), stat_vector(sum_exp), stat_vector(target_logit),
      ids(targets), n_tokens);
  TMT_CUDA_CHECK_LAUNCH();
}

void cross_entropy_grad(const Context& ctx, const Tensor& dlogits, const Tensor& logits,
                        const Tensor& targets, const Tensor& row_max, const Tensor& sum_exp,
                        int64_t vocab_start, double grad_scale) {
  if (logits.size(0) == 0) return;
  if (is_bf16(logits)) {
    return grad_as<bf16>(ctx, dlogits, logits, targets, row_max, sum_exp, vocab_start, grad_scale);
  }
  grad_as<float>(ctx, dlogits, logits, targets, row_max, sum_exp, vocab_start, grad_scale);
}

}  // namespace tmt::cuda
