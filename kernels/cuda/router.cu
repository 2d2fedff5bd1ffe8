// router on CUDA (formulas in kernels/router.h), f32.
//
// Forward and backward: one warp per token row, kRowsPerBlock rows a block, each warp with a row of
// E floats of shared memory (the scores it selects from, or the gradient with respect to probs).
// Top-k is the reference's repeated selection: each round takes the largest score not yet chosen,
// the lower index on ties (a warp arg-max over (score, index) pairs, a total order, so the result
// does not depend on the reduction's shape).
//
// Statistics: one block per expert column (#assignments and Σ_t probs in f64, in a fixed order, so
// the result is the same from run to run) plus one block for Σ_t lse². The gradients from the
// statistics are computed in f64 from the same expressions as the reference; the losses are
// computed on the host from the statistics copied back. load_balancing_loss and z_loss, which have
// no statistics tensor of their own, reduce into the caller's workspace (Context::workspace).
#include <climits>
#include <vector>

#include "kernels/base/workspace.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/router.h"

namespace tmt::cuda {
namespace {

constexpr int kRowsPerBlock = 4;   // warps per block
constexpr int kMaxTopK = 32;       // one choice per lane
constexpr int kMaxExperts = 2048;  // 4 warps x 2048 floats = 32 KiB of shared memory
constexpr int kMaxGroups = 32;     // one group score per lane

int blocks_for_rows(int64_t rows) {
  return static_cast<int>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
}

// The choice's shape: groups (1 = every expert eligible), the groups kept, routed_scaling_factor.
struct Choice {
  int groups = 1, kept_groups = 1;
  float scaling = 1.0f;
};

// probs [T, E], topk_idx/topk_w [T, K], lse [T] written from logits [T, E] and bias [E] (may be
// null). The warp's shared row holds the choice scores (probs + bias), -inf where ineligible.
__global__ void router_fwd_kernel(float* __restrict__ probs, int32_t* __restrict__ topk_idx,
                                  float* __restrict__ topk_w, float* __restrict__ lse,
                                  const float* __restrict__ logits, const float* __restrict__ bias,
                                  int64_t rows, int e, int k, bool sigmoid, bool renormalize,
                                  Choice choice) {
  extern __shared__ float shared[];
  __shared__ int chosen_of[kRowsPerBlock][kMaxTopK];
  __shared__ float group_of[kRowsPerBlock][kMaxGroups];
  __shared__ int kept_of[kRowsPerBlock][kMaxGroups];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t t = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + warp;
  if (t >= rows) return;  // the whole warp leaves; nothing below waits on the block
  float* score = shared + static_cast<int64_t>(warp) * e;
  int* chosen = chosen_of[warp];
  const float* lt = logits + t * e;

  float m = -INFINITY;
  for (int j = lane; j < e; j += 32) m = fmaxf(m, lt[j]);
  m = warp_max(m);
  float sum = 0.0f;
  for (int j = lane; j < e; j += 32) sum += expf(lt[j] - m);
  sum = warp_sum(sum);
  const float row_lse = m + logf(sum);
  if (lane == 0) lse[t] = row_lse;
  for (int j = lane; j < e; j += 32) {
    const float p = sigmoid ? 1.0f / (1.0f + expf(-lt[j])) : expf(lt[j] - row_lse);
    probs[t * e + j] = p;
    score[j] = bias != nullptr ? p + bias[j] : p;
  }
  __syncwarp();
  if (choice.groups > 1) {
    // Lane g scores group g (the sum of its two largest choice scores), lane 0 keeps the best
    // kept_groups (ties: the lower group), then every expert of a dropped group is masked.
    const int size = e / choice.groups;
    if (lane < choice.groups) {
      float first = -INFINITY, second = -INFINITY;
      for (int j = lane * size; j < (lane + 1) * size; ++j) {
        const float c = score[j];
        if (c > first) {
          second = first;
          first = c;
        } else if (c > second) {
          second = c;
        }
      }
      group_of[warp][lane] = first + second;
      kept_of[warp][lane] = 0;
    }
    __syncwarp();
    if (lane == 0) {
      for (int c = 0; c < choice.kept_groups; ++c) {
        int best = -1;
        for (int g = 0; g < choice.groups; ++g) {
          if (kept_of[warp][g] == 0 && (best < 0 || group_of[warp][g] > group_of[warp][best]))
            best = g;
        }
        kept_of[warp][best] = 1;
      }
    }
    __syncwarp();
    for (int j = lane; j < e; j += 32) {
      if (kept_of[warp][j / size] == 0) score[j] = -INFINITY;
    }
    __syncwarp();
  }

  int my_idx = 0;
  float my_w = 0.0f, chosen_sum = 0.0f;
  for (int c = 0; c < k; ++c) {
    float best = -INFINITY;
    int best_j = -1;
    for (int j = lane; j < e; j += 32) {
      bool taken = false;
      for (int i = 0; i < c; ++i) taken |= chosen[i] == j;
      if (taken) continue;
      const float v = score[j];
      if (best_j < 0 || v > best) best = v, best_j = j;  // j ascends: ties keep the lower index
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      const float other = __shfl_xor_sync(kFullMask, best, offset);
      const int other_j = __shfl_xor_sync(kFullMask, best_j, offset);
      const bool take =
          other_j >= 0 && (best_j < 0 || other > best || (other == best && other_j < best_j));
      if (take) best = other, best_j = other_j;
    }
    // The weight is the unbiased score (this warp wrote it above; __syncwarp orders it).
    const float p = probs[t * e + best_j];
    if (lane == 0) chosen[c] = best_j;
    if (lane == c) my_idx = best_j, my_w = p;
    chosen_sum += p;
    __syncwarp();
  }
  if (lane < k) {
    topk_idx[t * k + lane] = my_idx;
    topk_w[t * k + lane] = renormalize ? my_w / chosen_sum * choice.scaling : my_w * choice.scaling;
  }
}

// dlogits [T, E] written; dprobs [T, E] and dlse [T] may be null.
__global__ void router_bwd_kernel(float* __restrict__ dlogits, const float* __restrict__ dtopk_w,
                                  const float* __restrict__ dprobs, const float* __restrict__ dlse,
                                  const float* __restrict__ probs,
                                  const int32_t* __restrict__ topk_idx,
                                  const float* __restrict__ topk_w,
                                  const float* __restrict__ logits, int64_t rows, int e, int k,
                                  bool sigmoid, bool renormalize, float scaling) {
  extern __shared__ float shared[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t t = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + warp;
  if (t >= rows) return;
  float* g = shared + static_cast<int64_t>(warp) * e;  // d loss / d probs[t]
  const float* pt = probs + t * e;
  const int32_t* idx = topk_idx + t * k;
  const float* dw = dtopk_w + t * k;
  const float* w = topk_w + t * k;

  for (int j = lane; j < e; j += 32) g[j] = dprobs != nullptr ? dprobs[t * e + j] : 0.0f;
  __syncwarp();
  // w_c = γ p_c / S with S = Σ_c p_c: d/dp_c = (γ dw_c - Σ_j dw_j w_j) / S. The chosen experts
  // are distinct, so the lanes below never add to the same element.
  float chosen_sum = 0.0f, dot = 0.0f;
  if (renormalize) {
    for (int c = 0; c < k; ++c) {
      chosen_sum += pt[idx[c]];
      dot += dw[c] * w[c];
    }
  }
  for (int c = lane; c < k; c += 32)
    g[idx[c]] += renormalize ? (scaling * dw[c] - dot) / chosen_sum : scaling * dw[c];
  __syncwarp();

  float* out = dlogits + t * e;
  if (sigmoid) {
    for (int j = lane; j < e; j += 32) out[j] = g[j] * pt[j] * (1.0f - pt[j]);
  } else {
    float gp = 0.0f;
    for (int j = lane; j < e; j += 32) gp += g[j] * pt[j];
    gp = warp_sum(gp);
    for (int j = lane; j < e; j += 32) out[j] = pt[j] * (g[j] - gp);
  }
  if (dlse != nullptr) {  // d lse / d logits = softmax(logits)
    const float* lt = logits + t * e;
    float m = -INFINITY;
    for (int j = lane; j < e; j += 32) m = fmaxf(m, lt[j]);
    m = warp_max(m);
    float sum = 0.0f;
    for (int j = lane; j < e; j += 32) sum += expf(lt[j] - m);
    sum = warp_sum(sum);
    const float dl = dlse[t];
    for (int j = lane; j < e; j += 32) out[j] += dl * expf(lt[j] - m) / sum;
  }
}

__device__ void sum_squares(double* out, const float* __restrict__ lse, int64_t rows) {
  double s = 0.0;
  for (int64_t t = threadIdx.x; t < rows; t += blockDim.x) {
    const double l = lse[t];
    s += l * l;
  }
  s = block_sum(s);
  if (threadIdx.x == 0) *out = s;
}

// stats [2E + 1] written (see kernels/router.h). Blocks 0..E-1: one expert each; block E: Σ lse²
// (left alone when lse is null).
__global__ void stats_kernel(double* __restrict__ stats, const float* __restrict__ probs,
                             const int32_t* __restrict__ topk_idx, const float* __restrict__ lse,
                             int64_t rows, int e, int k) {
  const int j = blockIdx.x;
  if (j == e) {
    if (lse != nullptr) sum_squares(stats + 2 * e, lse, rows);
    return;
  }
  double count = 0.0, psum = 0.0;
  for (int64_t a = threadIdx.x; a < rows * k; a += blockDim.x)
    count += topk_idx[a] == j ? 1.0 : 0.0;
  for (int64_t t = threadIdx.x; t < rows; t += blockDim.x) psum += probs[t * e + j];
  count = block_sum(count);
  psum = block_sum(psum);
  if (threadIdx.x == 0) {
    stats[j] = count;
    stats[e + j] = psum;
  }
}

__global__ void sum_squares_kernel(double* out, const float* __restrict__ lse, int64_t rows) {
  sum_squares(out, lse, rows);
}

// dprobs[t, j] = grad_weight · coeff · E · f_j / tokens, f_j = stats[j] / (tokens · top_k): the
// reference's expression, evaluated in f64 in the same order.
__global__ void balance_grad_kernel(float* __restrict__ dprobs, const double* __restrict__ stats,
                                    int64_t rows, int e, double tokens, double top_k, double coeff,
                                    double weight) {
  const int64_t n = rows * e;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const int j = static_cast<int>(i % e);
    const double f = stats[j] / (tokens * top_k);
    dprobs[i] = static_cast<float>(weight * coeff * static_cast<double>(e) * f / tokens);
  }
}

// dlse[t] = grad_weight · coeff · 2 · lse[t] / tokens, in f64 as the reference.
__global__ void z_grad_kernel(float* __restrict__ dlse, const float* __restrict__ lse, int64_t rows,
                              double tokens, double coeff, double weight) {
  for (int64_t t = global_thread(); t < rows; t += grid_threads()) {
    dlse[t] = static_cast<float>(weight * coeff * 2.0 * static_cast<double>(lse[t]) / tokens);
  }
}

// stats [B, 2E] written: block b sums sequence b's rows of this rank (rows [first_token, +rows)
// of the micro-batch), row by row in token order (deterministic): each row's Σ_j probs by a block
// reduction, then each thread its experts' counts and normalised scores, in f64.
__global__ void seq_stats_kernel(double* __restrict__ stats, const float* __restrict__ probs,
                                 const int32_t* __restrict__ topk_idx, int64_t rows, int e, int k,
                                 int64_t first_token, int64_t seq_len) {
  const int64_t b = blockIdx.x;
  const int64_t begin = max(b * seq_len - first_token, int64_t{0});
  const int64_t end = min((b + 1) * seq_len - first_token, rows);
  double* sb = stats + b * 2 * e;
  for (int j = threadIdx.x; j < e; j += blockDim.x) sb[j] = sb[e + j] = 0.0;
  for (int64_t t = begin; t < end; ++t) {
    double part = 0.0;
    for (int j = threadIdx.x; j < e; j += blockDim.x) part += probs[t * e + j];
    const double sum = block_sum(part);
    for (int j = threadIdx.x; j < e; j += blockDim.x) {
      double count = 0.0;
      for (int c = 0; c < k; ++c) count += topk_idx[t * k + c] == j ? 1.0 : 0.0;
      sb[j] += count;
      sb[e + j] += static_cast<double>(probs[t * e + j]) / sum;
    }
  }
}

// dprobs [T, E] accumulated: one warp per row, the reference's expression in f64.
__global__ void seq_aux_grad_kernel(float* __restrict__ dprobs, const float* __restrict__ probs,
                                    const double* __restrict__ stats, int64_t rows, int e,
                                    int64_t first_token, int64_t seq_len, double f_scale,
                                    double g_scale) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t t = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + warp;
  if (t >= rows) return;
  const double* sb = stats + (first_token + t) / seq_len * 2 * e;
  const float* pt = probs + t * e;
  double sum = 0.0, dot = 0.0;
  for (int j = lane; j < e; j += 32) sum += pt[j];
  sum = warp_sum(sum);
  for (int j = lane; j < e; j += 32) dot += g_scale * f_scale * sb[j] * pt[j] / sum;
  dot = warp_sum(dot);
  for (int j = lane; j < e; j += 32)
    dprobs[t * e + j] += static_cast<float>((g_scale * f_scale * sb[j] - dot) / sum);
}

std::vector<double> to_host(const Context& ctx, const double* device, size_t count) {
  std::vector<double> host(count);
  TMT_CUDA_CHECK(cudaMemcpyAsync(host.data(), device, count * sizeof(double),
                                 cudaMemcpyDeviceToHost, stream_of(ctx)));
  TMT_CUDA_CHECK(cudaStreamSynchronize(stream_of(ctx)));
  return host;
}

void launch_stats(const Context& ctx, double* stats, const Tensor& probs, const Tensor& topk_idx,
                  const float* lse) {
  const int e = static_cast<int>(probs.size(1));
  stats_kernel<<<e + 1, kThreads, 0, stream_of(ctx)>>>(
      stats, probs.ptr<const float>(), topk_idx.ptr<const int32_t>(), lse, probs.size(0), e,
      static_cast<int>(topk_idx.size(1)));
  TMT_CUDA_CHECK_LAUNCH();
}

void launch_balance_grad(const Context& ctx, const Tensor& dprobs, const double* stats,
                         int64_t tokens, int64_t top_k, double coeff, double weight) {
  if (dprobs.numel() == 0) return;
  balance_grad_kernel<<<grid_for(dprobs.numel()), kThreads, 0, stream_of(ctx)>>>(
      dprobs.ptr<float>(), stats, dprobs.size(0), static_cast<int>(dprobs.size(1)),
      static_cast<double>(tokens), static_cast<double>(top_k), coeff, weight);
  TMT_CUDA_CHECK_LAUNCH();
}

void launch_z_grad(const Context& ctx, const Tensor& dlse, const Tensor& lse, int64_t tokens,
                   double coeff, double weight) {
  if (lse.numel() == 0) return;
  z_grad_kernel<<<grid_for(lse.numel()), kThreads, 0, stream_of(ctx)>>>(
      dlse.ptr<float>(), lse.ptr<const float>(), lse.numel(), static_cast<double>(tokens), coeff,
      weight);
  TMT_CUDA_CHECK_LAUNCH();
}

// The load-balancing loss from statistics on the host (the reference's expression).
double balance_loss(const std::vector<double>& st, int64_t e, int64_t tokens, int64_t top_k,
                    double coeff) {
  const double total = static_cast<double>(tokens);
  double aux = 0;
  for (int64_t j = 0; j < e; ++j) {
    aux += st[static_cast<size_t>(j)] / (total * static_cast<double>(top_k)) *
           st[static_cast<size_t>(e + j)] / total;
  }
  return coeff * static_cast<double>(e) * aux;
}

void check_sizes(const char* op, int64_t e, int64_t k) {
  TMT_CHECK(e <= kMaxExperts && k <= kMaxTopK,
            "{}: {} experts, top-{}: the CUDA router handles at most {} experts and top-{}", op, e,
            k, kMaxExperts, kMaxTopK);
}

}  // namespace

size_t router_loss_workspace_bytes(int64_t experts) {
  return static_cast<size_t>(2 * experts + 1) * sizeof(double);
}

void router_fwd(const Context& ctx, const Tensor& probs, const Tensor& topk_idx,
                const Tensor& topk_w, const Tensor& lse, const Tensor& logits, const Tensor& bias,
                const RouterParams& params) {
  const int64_t rows = logits.size(0), e = logits.size(1), k = params.top_k;
  check_sizes("router_fwd", e, k);
  TMT_CHECK(params.n_groups <= kMaxGroups,
            "router_fwd: {} groups: the CUDA router handles at most {}", params.n_groups,
            kMaxGroups);
  if (rows == 0) return;
  const size_t shared = kRowsPerBlock * static_cast<size_t>(e) * sizeof(float);
  const Choice choice{.groups = static_cast<int>(params.n_groups),
                      .kept_groups = static_cast<int>(params.topk_groups),
                      .scaling = static_cast<float>(params.scaling)};
  router_fwd_kernel<<<blocks_for_rows(rows), kRowsPerBlock * 32, shared, stream_of(ctx)>>>(
      probs.ptr<float>(), topk_idx.ptr<int32_t>(), topk_w.ptr<float>(), lse.ptr<float>(),
      logits.ptr<const float>(), bias.defined() ? bias.ptr<const float>() : nullptr, rows,
      static_cast<int>(e), static_cast<int>(k), params.score == RouterScore::kSigmoid,
      params.renormalize, choice);
  TMT_CUDA_CHECK_LAUNCH();
}

void router_bwd(const Context& ctx, const Tensor& dlogits, const Tensor& dtopk_w,
                const Tensor& dprobs, const Tensor& dlse, const Tensor& probs,
                const Tensor& topk_idx, const Tensor& topk_w, const Tensor& logits,
                const RouterParams& params) {
  const int64_t rows = logits.size(0), e = logits.size(1), k = params.top_k;
  check_sizes("router_bwd", e, k);
  if (rows == 0) return;
  const size_t shared = kRowsPerBlock * static_cast<size_t>(e) * sizeof(float);
  router_bwd_kernel<<<blocks_for_rows(rows), kRowsPerBlock * 32, shared, stream_of(ctx)>>>(
      dlogits.ptr<float>(), dtopk_w.ptr<const float>(),
      dprobs.defined() ? dprobs.ptr<const float>() : nullptr,
      dlse.defined() ? dlse.ptr<const float>() : nullptr, probs.ptr<const float>(),
      topk_idx.ptr<const int32_t>(), topk_w.ptr<const float>(), logits.ptr<const float>(), rows,
      static_cast<int>(e), static_cast<int>(k), params.score == RouterScore::kSigmoid,
      params.renormalize, static_cast<float>(params.scaling));
  TMT_CUDA_CHECK_LAUNCH();
}

double load_balancing_loss(const Context& ctx, const Tensor& dprobs, const Tensor& probs,
                           const Tensor& topk_idx, double coeff, double grad_weight) {
  const int64_t rows = probs.size(0), e = probs.size(1), k = topk_idx.size(1);
  if (rows == 0) return 0.0;  // the reference's f and P are all zero
  double* stats = workspace_for<double>(ctx, router_loss_workspace_bytes(e), "load_balancing_loss");
  launch_stats(ctx, stats, probs, topk_idx, nullptr);
  launch_balance_grad(ctx, dprobs, stats, rows, k, coeff, grad_weight);
  return balance_loss(to_host(ctx, stats, static_cast<size_t>(2 * e)), e, rows, k, coeff);
}

double z_loss(const Context& ctx, const Tensor& dlse, const Tensor& lse, double coeff,
              double grad_weight) {
  const int64_t rows = lse.numel();
  if (rows == 0) return 0.0;
  double* sum = workspace_for<double>(ctx, sizeof(double), "z_loss");
  sum_squares_kernel<<<1, kThreads, 0, stream_of(ctx)>>>(sum, lse.ptr<const float>(), rows);
  TMT_CUDA_CHECK_LAUNCH();
  launch_z_grad(ctx, dlse, lse, rows, coeff, grad_weight);
  return coeff * to_host(ctx, sum, 1)[0] / static_cast<double>(rows);
}

void router_stats(const Context& ctx, const Tensor& stats, const Tensor& probs,
                  const Tensor& topk_idx, const Tensor& lse) {
  launch_stats(ctx, stats.ptr<double>(), probs, topk_idx, lse.ptr<const float>());
}

double load_balancing_from_stats(const Context& ctx, const Tensor& dprobs, const Tensor& stats,
                                 int64_t tokens, int64_t top_k, double coeff, double grad_weight,
                                 const double* host_stats) {
  const int64_t e = dprobs.size(1);
  launch_balance_grad(ctx, dprobs, stats.ptr<const double>(), tokens, top_k, coeff, grad_weight);
  const auto n = static_cast<size_t>(2 * e);
  const std::vector<double> st = host_stats != nullptr
                                     ? std::vector<double>(host_stats, host_stats + n)
                                     : to_host(ctx, stats.ptr<const double>(), n);
  return balance_loss(st, e, tokens, top_k, coeff);
}

double z_loss_from_stats(const Context& ctx, const Tensor& dlse, const Tensor& lse,
                         const Tensor& stats, int64_t tokens, double coeff, double grad_weight,
                         const double* host_stats) {
  launch_z_grad(ctx, dlse, lse, tokens, coeff, grad_weight);
  if (tokens <= 0) return 0.0;
  const int64_t last = stats.numel() - 1;
  const double sum = host_stats != nullptr ? host_stats[last]
                                           : to_host(ctx, stats.ptr<const double>() + last, 1)[0];
  return coeff * sum / static_cast<double>(tokens);
}

void seq_aux_stats(const Context& ctx, const Tensor& stats, const Tensor& probs,
                   const Tensor& topk_idx, int64_t first_token, int64_t seq_len) {
  const int64_t batch = stats.size(0);
  if (batch == 0) return;
  seq_stats_kernel<<<static_cast<int>(batch), kThreads, 0, stream_of(ctx)>>>(
      stats.ptr<double>(), probs.ptr<const float>(), topk_idx.ptr<const int32_t>(), probs.size(0),
      static_cast<int>(probs.size(1)), static_cast<int>(topk_idx.size(1)), first_token, seq_len);
  TMT_CUDA_CHECK_LAUNCH();
}

double seq_aux_from_stats(const Context& ctx, const Tensor& dprobs, const Tensor& probs,
                          const Tensor& stats, int64_t first_token, int64_t seq_len,
                          int64_t seq_tokens, int64_t top_k, double coeff, double grad_weight,
                          const double* host_stats) {
  const int64_t rows = probs.size(0), e = probs.size(1), batch = stats.size(0);
  const double s = static_cast<double>(seq_tokens);
  const double f_scale = static_cast<double>(e) / (static_cast<double>(top_k) * s);
  if (rows > 0) {
    seq_aux_grad_kernel<<<blocks_for_rows(rows), kRowsPerBlock * 32, 0, stream_of(ctx)>>>(
        dprobs.ptr<float>(), probs.ptr<const float>(), stats.ptr<const double>(), rows,
        static_cast<int>(e), first_token, seq_len, f_scale,
        grad_weight * coeff / (static_cast<double>(batch) * s));
    TMT_CUDA_CHECK_LAUNCH();
  }
  if (batch == 0) return 0.0;
  const auto n = static_cast<size_t>(batch * 2 * e);
  const std::vector<double> st = host_stats != nullptr
                                     ? std::vector<double>(host_stats, host_stats + n)
                                     : to_host(ctx, stats.ptr<const double>(), n);
  double loss = 0;  // the reference's expression and order
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t j = 0; j < e; ++j) {
      loss += f_scale * st[static_cast<size_t>(b * 2 * e + j)] *
              st[static_cast<size_t>(b * 2 * e + e + j)] / s;
    }
  }
  return coeff * loss / static_cast<double>(batch);
}

}  // namespace tmt::cuda
