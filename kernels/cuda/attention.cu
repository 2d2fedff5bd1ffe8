// attention on CUDA (formulas in kernels/attention.h). Three paths, chosen per call
// (attention_path, at the end of this file):
//   - bf16 (and 16-byte aligned tensors) where cuDNN takes the shape: its fused SDPA
//     (kernels/cuda/cudnn_attention.cpp);
//   - bf16 with Dqk = Dv = 64 or 128 (and 16-byte aligned tensors): the tensor-core kernels of
//     kernels/cuda/flash_attention.cu (mma.sync, FlashAttention-2 style);
//   - everything else (f32, other head dims up to 256, Dv different from Dqk): the kernels below,
//     flash-attention-style tiles on the CUDA cores, fp32 throughout, correctness first.
//
// Tiles are kTile = 32 queries by 32 keys, blocks of 4 warps; a warp owns 8 rows of its block's
// tile, and its lanes run over the other tile dimension (32 keys or queries) when computing scores
// and over the head dimension (lane + 32 c, c < C) when accumulating; C covers the larger of Dqk
// and Dv. Tiles sit in shared memory as fp32 rows of ld = their head dim (Dqk for q, k; Dv for v,
// dout) rounded up to an odd number of floats, so a lane-per-row access is free of bank conflicts.
//
//   forward       one block per (query tile, head, batch): online softmax over the visible key
//                 tiles (running max m, running sum l, rescaled accumulator), out = acc / l,
//                 lse = m + log l.
//   backward dk/dv one block per (key tile, kv head, batch): for each query head of the group and
//                 each query tile that sees the keys, P = exp(s - lse) recomputed, dP = dout vᵀ,
//                 dS = P (dP - D), D = Σ dout ⊙ out (recomputed per tile); dv += Pᵀ dout,
//                 dk += scale dSᵀ q. Each block owns its dk, dv rows: no atomics.
//   backward dq   one block per (query tile, head, batch): over the visible key tiles,
//                 dq += scale dS k.
// Every output element has exactly one writer, so results do not depend on scheduling. With fewer
// queries than keys (S < Sk), query i is key position i + Sk - S in the mask and the tile ranges.
#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "kernels/base/env.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/flash_attention.h"

namespace tmt::cuda {
namespace {

constexpr int kTile = 32;
constexpr int kWarps = 4;
constexpr int kRows = kTile / kWarps;  // rows of a tile per warp

struct Shape4 {
  int64_t b, s, h, hk, dqk, dv, group;
  float scale;
  int64_t window;
  int64_t sk;  // keys, >= s: query i is the key sequence's position i + sk - s (queries last)
  // Element offsets of row (batch, position, head) in q/dq, k/dk (Dqk wide), out/dout and v/dv
  // (Dv wide); lse is [B, H, S].
  __device__ int64_t q_at(int64_t bi, int64_t i, int64_t hi) const {
    return ((bi * s + i) * h + hi) * dqk;
  }
  __device__ int64_t k_at(int64_t bi, int64_t j, int64_t g) const {
    return ((bi * sk + j) * hk + g) * dqk;
  }
  __device__ int64_t o_at(int64_t bi, int64_t i, int64_t hi) const {
    return ((bi * s + i) * h + hi) * dv;
  }
  __device__ int64_t v_at(int64_t bi, int64_t j, int64_t g) const {
    return ((bi * sk + j) * hk + g) * dv;
  }
  __device__ int64_t off() const { return sk - s; }
  __device__ bool visible(int64_t i, int64_t j) const {
    return i < s && j <= i + off() && (window == 0 || j > i + off() - window);
  }
  __device__ int64_t first_key(int64_t i) const {
    return window > 0 ? (i + off() - window + 1 > 0 ? i + off() - window + 1 : 0) : 0;
  }
  // One past the last key a query of the tile at i0 sees.
  __device__ int64_t key_end(int64_t i0) const {
    return i0 + kTile + off() < sk ? i0 + kTile + off() : sk;
  }
};

__host__ __device__ inline int leading_dim(int64_t dh) {
  return static_cast<int>(dh % 2 == 1 ? dh : dh + 1);
}

// Rows [row0, row0 + kTile) of a [.., Dh] sequence into shared memory (zeros past the end).
// `at(r)` gives row r's element offset.
template <class T, class At>
__device__ void load_tile(float* tile, int ld, const T* src, int64_t row0, int64_t rows, int dh,
                          At at) {
  for (int idx = threadIdx.x; idx < kTile * dh; idx += blockDim.x) {
    const int r = idx / dh, d = idx - r * dh;
    const int64_t row = row0 + r;
    tile[r * ld + d] = row < rows ? to_math(src[at(row) + d]) : 0.0f;
  }
}

// lse and D = Σ_d dout ⊙ out for the query tile's rows (warp w computes rows w·kRows...).
template <class T>
__device__ void load_row_stats(float* lse_tile, float* d_tile, const float* lse_row, const T* dout,
                               const T* out, const Shape4& n, int64_t bi, int64_t hi, int64_t i0) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int r = 0; r < kRows; ++r) {
    const int il = warp * kRows + r;
    const int64_t i = i0 + il;
    float dsum = 0.0f;
    if (i < n.s) {
      const int64_t at = n.o_at(bi, i, hi);
      for (int64_t d = lane; d < n.dv; d += 32)
        dsum += to_math(dout[at + d]) * to_math(out[at + d]);
    }
    dsum = warp_sum(dsum);
    if (lane == 0) {
      d_tile[il] = dsum;
      lse_tile[il] = i < n.s ? lse_row[i] : 0.0f;
    }
  }
}

template <class T, int C>
__global__ void __launch_bounds__(kWarps * 32)
    attention_fwd_kernel(T* __restrict__ out, float* __restrict__ lse, const T* __restrict__ q,
                         const T* __restrict__ k, const T* __restrict__ v, Shape4 n) {
  extern __shared__ float shared[];
  const int dqk = static_cast<int>(n.dqk), dv = static_cast<int>(n.dv);
  const int ld = leading_dim(dqk), ldv = leading_dim(dv);
  float* qs = shared;
  float* ks = qs + kTile * ld;
  float* vs = ks + kTile * ld;
  float* ps = vs + kTile * ldv;  // [kTile][kTile]: P of the current tiles
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kTile, hi = blockIdx.y, bi = blockIdx.z;
  const int64_t g = hi / n.group;

  load_tile(qs, ld, q, i0, n.s, dqk, [&](int64_t i) { return n.q_at(bi, i, hi); });
  float m[kRows], l[kRows], acc[kRows][C];
  for (int r = 0; r < kRows; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
    for (int c = 0; c < C; ++c) acc[r][c] = 0.0f;
  }
  const int64_t key_begin = n.first_key(i0), key_end = n.key_end(i0);
  for (int64_t j0 = key_begin; j0 < key_end; j0 += kTile) {
    __syncthreads();  // the previous tiles' readers are done (and qs is loaded)
    load_tile(ks, ld, k, j0, n.sk, dqk, [&](int64_t j) { return n.k_at(bi, j, g); });
    load_tile(vs, ldv, v, j0, n.sk, dv, [&](int64_t j) { return n.v_at(bi, j, g); });
    __syncthreads();
    float s[kRows];
    for (int r = 0; r < kRows; ++r) s[r] = 0.0f;
    for (int d = 0; d < dqk; ++d) {
      const float kd = ks[lane * ld + d];
      for (int r = 0; r < kRows; ++r) s[r] += qs[(warp * kRows + r) * ld + d] * kd;
    }
    const int64_t j = j0 + lane;
    for (int r = 0; r < kRows; ++r) {
      const int il = warp * kRows + r;
      const bool seen = n.visible(i0 + il, j);
      const float sr = seen ? n.scale * s[r] : -INFINITY;
      const float m_new = fmaxf(m[r], warp_max(sr));
      float p = 0.0f, alpha = 1.0f;
      if (m_new != -INFINITY) {  // some key of this row seen so far
        p = seen ? expf(sr - m_new) : 0.0f;
        alpha = expf(m[r] - m_new);
      }
      l[r] = l[r] * alpha + warp_sum(p);
      m[r] = m_new;
      ps[il * kTile + lane] = p;
      for (int c = 0; c < C; ++c) acc[r][c] *= alpha;
    }
    __syncwarp();
    for (int jj = 0; jj < kTile; ++jj) {
      for (int c = 0; c < C; ++c) {
        const int d = lane + 32 * c;
        if (d >= dv) continue;
        const float vd = vs[jj * ldv + d];
        for (int r = 0; r < kRows; ++r) acc[r][c] += ps[(warp * kRows + r) * kTile + jj] * vd;
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    const int64_t i = i0 + warp * kRows + r;
    if (i >= n.s) continue;
    const float inv = 1.0f / l[r];
    const int64_t at = n.o_at(bi, i, hi);
    for (int c = 0; c < C; ++c) {
      const int d = lane + 32 * c;
      if (d < dv) out[at + d] = from_math<T>(acc[r][c] * inv);
    }
    if (lane == 0) lse[(bi * n.h + hi) * n.s + i] = m[r] + logf(l[r]);
  }
}

template <class T, int C>
__global__ void __launch_bounds__(kWarps * 32)
    attention_dkdv_kernel(T* __restrict__ dk, T* __restrict__ dv, const T* __restrict__ dout,
                          const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                          const T* __restrict__ out, const float* __restrict__ lse, Shape4 n) {
  extern __shared__ float shared[];
  const int dqk = static_cast<int>(n.dqk), dim_v = static_cast<int>(n.dv);
  const int ld = leading_dim(dqk), ldv = leading_dim(dim_v);
  float* ks = shared;
  float* vs = ks + kTile * ld;
  float* qs = vs + kTile * ldv;
  float* dos = qs + kTile * ld;
  float* ps = dos + kTile * ldv;    // [key][query]
  float* dss = ps + kTile * kTile;  // [key][query]
  float* lse_tile = dss + kTile * kTile;
  float* d_tile = lse_tile + kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kTile, g = blockIdx.y, bi = blockIdx.z;

  load_tile(ks, ld, k, j0, n.sk, dqk, [&](int64_t j) { return n.k_at(bi, j, g); });
  load_tile(vs, ldv, v, j0, n.sk, dim_v, [&](int64_t j) { return n.v_at(bi, j, g); });
  float acc_dk[kRows][C], acc_dv[kRows][C];
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < C; ++c) acc_dk[r][c] = acc_dv[r][c] = 0.0f;
  }
  // Queries from the first that sees key j0 (position j0, query j0 - off) to the last that sees
  // key j0 + kTile - 1 (position j0 + kTile - 2 + window); none when the window has passed every
  // key of the tile before the first query.
  const int64_t off = n.sk - n.s, query_begin = j0 > off ? j0 - off : 0;
  const int64_t query_end =
      n.window > 0 ? std::min<int64_t>(n.s, j0 + kTile - 1 + n.window - off) : n.s;
  for (int64_t hi = g * n.group; hi < (g + 1) * n.group; ++hi) {
    const float* lse_row = lse + (bi * n.h + hi) * n.s;
    for (int64_t i0 = query_begin; i0 < query_end; i0 += kTile) {
      __syncthreads();
      load_tile(qs, ld, q, i0, n.s, dqk, [&](int64_t i) { return n.q_at(bi, i, hi); });
      load_tile(dos, ldv, dout, i0, n.s, dim_v, [&](int64_t i) { return n.o_at(bi, i, hi); });
      load_row_stats(lse_tile, d_tile, lse_row, dout, out, n, bi, hi, i0);
      __syncthreads();
      float s[kRows], dp[kRows];
      for (int r = 0; r < kRows; ++r) s[r] = dp[r] = 0.0f;
      for (int d = 0; d < dqk; ++d) {
        const float qd = qs[lane * ld + d];
        for (int r = 0; r < kRows; ++r) s[r] += qd * ks[(warp * kRows + r) * ld + d];
      }
      for (int d = 0; d < dim_v; ++d) {
        const float od = dos[lane * ldv + d];
        for (int r = 0; r < kRows; ++r) dp[r] += od * vs[(warp * kRows + r) * ldv + d];
      }
      const int64_t i = i0 + lane;
      for (int r = 0; r < kRows; ++r) {
        const int jl = warp * kRows + r;
        const float p = n.visible(i, j0 + jl) ? expf(n.scale * s[r] - lse_tile[lane]) : 0.0f;
        ps[jl * kTile + lane] = p;
        dss[jl * kTile + lane] = p * (dp[r] - d_tile[lane]);
      }
      __syncwarp();
      for (int il = 0; il < kTile; ++il) {
        for (int c = 0; c < C; ++c) {
          const int d = lane + 32 * c;
          if (d < dim_v) {
            const float od = dos[il * ldv + d];
            for (int r = 0; r < kRows; ++r)
              acc_dv[r][c] += ps[(warp * kRows + r) * kTile + il] * od;
          }
          if (d < dqk) {
            const float qd = qs[il * ld + d];
            for (int r = 0; r < kRows; ++r) {
              acc_dk[r][c] += dss[(warp * kRows + r) * kTile + il] * qd;
            }
          }
        }
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    const int64_t j = j0 + warp * kRows + r;
    if (j >= n.sk) continue;
    const int64_t k_at = n.k_at(bi, j, g), v_at = n.v_at(bi, j, g);
    for (int c = 0; c < C; ++c) {
      const int d = lane + 32 * c;
      if (d < dqk) dk[k_at + d] = from_math<T>(n.scale * acc_dk[r][c]);
      if (d < dim_v) dv[v_at + d] = from_math<T>(acc_dv[r][c]);
    }
  }
}

template <class T, int C>
__global__ void __launch_bounds__(kWarps * 32)
    attention_dq_kernel(T* __restrict__ dq, const T* __restrict__ dout, const T* __restrict__ q,
                        const T* __restrict__ k, const T* __restrict__ v, const T* __restrict__ out,
                        const float* __restrict__ lse, Shape4 n) {
  extern __shared__ float shared[];
  const int dqk = static_cast<int>(n.dqk), dv = static_cast<int>(n.dv);
  const int ld = leading_dim(dqk), ldv = leading_dim(dv);
  float* qs = shared;
  float* dos = qs + kTile * ld;
  float* ks = dos + kTile * ldv;
  float* vs = ks + kTile * ld;
  float* dss = vs + kTile * ldv;  // [query][key]
  float* lse_tile = dss + kTile * kTile;
  float* d_tile = lse_tile + kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kTile, hi = blockIdx.y, bi = blockIdx.z;
  const int64_t g = hi / n.group;

  load_tile(qs, ld, q, i0, n.s, dqk, [&](int64_t i) { return n.q_at(bi, i, hi); });
  load_tile(dos, ldv, dout, i0, n.s, dv, [&](int64_t i) { return n.o_at(bi, i, hi); });
  load_row_stats(lse_tile, d_tile, lse + (bi * n.h + hi) * n.s, dout, out, n, bi, hi, i0);
  float acc[kRows][C];
  for (int r = 0; r < kRows; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = 0.0f;
  }
  const int64_t key_begin = n.first_key(i0), key_end = n.key_end(i0);
  for (int64_t j0 = key_begin; j0 < key_end; j0 += kTile) {
    __syncthreads();
    load_tile(ks, ld, k, j0, n.sk, dqk, [&](int64_t j) { return n.k_at(bi, j, g); });
    load_tile(vs, ldv, v, j0, n.sk, dv, [&](int64_t j) { return n.v_at(bi, j, g); });
    __syncthreads();
    float s[kRows], dp[kRows];
    for (int r = 0; r < kRows; ++r) s[r] = dp[r] = 0.0f;
    for (int d = 0; d < dqk; ++d) {
      const float kd = ks[lane * ld + d];
      for (int r = 0; r < kRows; ++r) s[r] += qs[(warp * kRows + r) * ld + d] * kd;
    }
    for (int d = 0; d < dv; ++d) {
      const float vd = vs[lane * ldv + d];
      for (int r = 0; r < kRows; ++r) dp[r] += dos[(warp * kRows + r) * ldv + d] * vd;
    }
    const int64_t j = j0 + lane;
    for (int r = 0; r < kRows; ++r) {
      const int il = warp * kRows + r;
      const float p = n.visible(i0 + il, j) ? expf(n.scale * s[r] - lse_tile[il]) : 0.0f;
      dss[il * kTile + lane] = p * (dp[r] - d_tile[il]);
    }
    __syncwarp();
    for (int jj = 0; jj < kTile; ++jj) {
      for (int c = 0; c < C; ++c) {
        const int d = lane + 32 * c;
        if (d >= dqk) continue;
        const float kd = ks[jj * ld + d];
        for (int r = 0; r < kRows; ++r) acc[r][c] += dss[(warp * kRows + r) * kTile + jj] * kd;
      }
    }
  }
  for (int r = 0; r < kRows; ++r) {
    const int64_t i = i0 + warp * kRows + r;
    if (i >= n.s) continue;
    const int64_t at = n.q_at(bi, i, hi);
    for (int c = 0; c < C; ++c) {
      const int d = lane + 32 * c;
      if (d < dqk) dq[at + d] = from_math<T>(n.scale * acc[r][c]);
    }
  }
}

Shape4 shape_of(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& p) {
  return {q.size(0),
          q.size(1),
          q.size(2),
          k.size(2),
          q.size(3),
          v.size(3),
          q.size(2) / k.size(2),
          static_cast<float>(p.softmax_scale),
          p.window,
          k.size(1)};
}

// Calls f(T{}, std::integral_constant<int, C>{}) for the tensors' dtype and the head dimensions'
// chunk count C = ceil(max(Dqk, Dv) / 32) rounded up to a power of two.
template <class F>
void dispatch(DType dtype, int64_t dh, F&& f) {
  const auto with_chunks = [&](auto zero) {
    if (dh <= 32) return f(zero, std::integral_constant<int, 1>{});
    if (dh <= 64) return f(zero, std::integral_constant<int, 2>{});
    if (dh <= 128) return f(zero, std::integral_constant<int, 4>{});
    return f(zero, std::integral_constant<int, 8>{});
  };
  if (dtype == DType::kBF16) return with_chunks(bf16{});
  with_chunks(float{});
}

// Launches `kernel` with `floats` of dynamic shared memory (raising the 48 KiB default first).
template <class Kernel, class... Args>
void launch(const Context& ctx, Kernel kernel, dim3 grid, size_t floats, Args... args) {
  const size_t bytes = floats * sizeof(float);
  TMT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(bytes)));
  kernel<<<grid, kWarps * 32, bytes, stream_of(ctx)>>>(args...);
  TMT_CUDA_CHECK_LAUNCH();
}

unsigned tiles(int64_t s) { return static_cast<unsigned>((s + kTile - 1) / kTile); }

template <class T>
T* data(const Tensor& t) {
  return static_cast<T*>(t.data);
}

void fp32_attention_fwd(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                        const Tensor& k, const Tensor& v, const AttentionParams& params) {
  const Shape4 n = shape_of(q, k, v, params);
  const size_t floats = kTile * (2 * static_cast<size_t>(leading_dim(n.dqk)) +
                                 static_cast<size_t>(leading_dim(n.dv))) +
                        kTile * kTile;
  const dim3 grid(tiles(n.s), static_cast<unsigned>(n.h), static_cast<unsigned>(n.b));
  dispatch(q.dtype, std::max(n.dqk, n.dv), [&](auto zero, auto chunks) {
    using T = decltype(zero);
    launch(ctx, attention_fwd_kernel<T, decltype(chunks)::value>, grid, floats, data<T>(out),
           lse.ptr<float>(), data<const T>(q), data<const T>(k), data<const T>(v), n);
  });
}

void fp32_attention_bwd(const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                        const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& out, const Tensor& lse, const AttentionParams& params) {
  const Shape4 n = shape_of(q, k, v, params);
  // Two tiles Dqk wide (q, k) and two Dv wide (v, dout) in both kernels.
  const size_t tiles4 =
      2 * kTile *
      (static_cast<size_t>(leading_dim(n.dqk)) + static_cast<size_t>(leading_dim(n.dv)));
  const size_t dkdv_floats = tiles4 + 2 * kTile * kTile + 2 * kTile;
  const size_t dq_floats = tiles4 + kTile * kTile + 2 * kTile;
  dispatch(q.dtype, std::max(n.dqk, n.dv), [&](auto zero, auto chunks) {
    using T = decltype(zero);
    launch(ctx, attention_dkdv_kernel<T, decltype(chunks)::value>,
           dim3(tiles(n.sk), static_cast<unsigned>(n.hk), static_cast<unsigned>(n.b)), dkdv_floats,
           data<T>(dk), data<T>(dv), data<const T>(dout), data<const T>(q), data<const T>(k),
           data<const T>(v), data<const T>(out), lse.ptr<const float>(), n);
    launch(ctx, attention_dq_kernel<T, decltype(chunks)::value>,
           dim3(tiles(n.s), static_cast<unsigned>(n.h), static_cast<unsigned>(n.b)), dq_floats,
           data<T>(dq), data<const T>(dout), data<const T>(q), data<const T>(k), data<const T>(v),
           data<const T>(out), lse.ptr<const float>(), n);
  });
}

// TMT_ATTENTION, read once: the path it forces, or none (unset or empty).
std::optional<AttentionPath> forced_path() {
  static const std::optional<AttentionPath> path = env_choice<AttentionPath>(
      "TMT_ATTENTION", {{attention_path_name(AttentionPath::kCudnn), AttentionPath::kCudnn},
                        {attention_path_name(AttentionPath::kFlash), AttentionPath::kFlash},
                        {attention_path_name(AttentionPath::kFp32), AttentionPath::kFp32}});
  return path;
}

bool aligned16(std::initializer_list<const void*> data) {
  return std::all_of(data.begin(), data.end(),
                     [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; });
}

std::string shape_str(AttentionPass pass, const AttentionShape& s, const AttentionParams& p) {
  return fmt::format("{} {} B {} S {} Sk {} H {} Hk {} Dqk {} Dv {} window {}",
                     pass == AttentionPass::kForward ? "forward" : "backward", dtype_name(s.dtype),
                     s.batch, s.seq, s.keys(), s.heads, s.kv_heads, s.head_dim_qk, s.head_dim_v,
                     p.window);
}

bool empty(const AttentionShape& s) {
  return s.batch == 0 || s.seq == 0 || s.heads == 0 || s.head_dim_qk == 0 || s.head_dim_v == 0;
}

}  // namespace

const char* attention_path_name(AttentionPath path) {
  switch (path) {
    case AttentionPath::kCudnn:
      return "cudnn";
    case AttentionPath::kFlash:
      return "flash";
    case AttentionPath::kFp32:
      return "fp32";
  }
  return "?";
}

AttentionPath attention_path(AttentionPass pass, const AttentionShape& shape,
                             const AttentionParams& params,
                             std::initializer_list<const void*> data) {
  const std::optional<AttentionPath> forced = forced_path();
  if (shape.dtype != DType::kBF16 || forced == AttentionPath::kFp32) return AttentionPath::kFp32;
  const bool aligned = aligned16(data);
  const bool flash =
      flash_attention_supported(shape.dtype, shape.head_dim_qk, shape.head_dim_v, data);
  if (forced == AttentionPath::kFlash) {
    TMT_CHECK(flash, "TMT_ATTENTION=flash, but the tensor-core kernels do not take attention {}{}",
              shape_str(pass, shape, params), aligned ? "" : " (a pointer not 16-byte aligned)");
    return AttentionPath::kFlash;
  }
  std::string why;
  const bool cudnn = aligned && cudnn_attention_supported(pass, shape, params, &why);
  if (forced == AttentionPath::kCudnn) {
    TMT_CHECK(cudnn, "TMT_ATTENTION=cudnn, but cuDNN does not take attention {}: {}",
              shape_str(pass, shape, params), aligned ? why : "a pointer not 16-byte aligned");
    return AttentionPath::kCudnn;
  }
  if (cudnn) return AttentionPath::kCudnn;
  return flash ? AttentionPath::kFlash : AttentionPath::kFp32;
}

size_t attention_fwd_workspace_bytes(const AttentionShape& shape, const AttentionParams& params) {
  if (empty(shape)) return 0;
  const AttentionPass pass = AttentionPass::kForward;
  return attention_path(pass, shape, params, {}) == AttentionPath::kCudnn
             ? cudnn_attention_workspace_bytes(pass, shape, params)
             : 0;
}

size_t attention_bwd_workspace_bytes(const AttentionShape& shape, const AttentionParams& params) {
  if (empty(shape)) return 0;
  const AttentionPass pass = AttentionPass::kBackward;
  switch (attention_path(pass, shape, params, {})) {
    case AttentionPath::kCudnn:
      return cudnn_attention_workspace_bytes(pass, shape, params);
    case AttentionPath::kFlash:
      return flash_attention_bwd_workspace_bytes(shape.batch, shape.seq, shape.heads);
    case AttentionPath::kFp32:
      break;
  }
  return 0;
}

void attention_fwd(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                   const Tensor& k, const Tensor& v, const AttentionParams& params) {
  if (q.numel() == 0) return;
  switch (attention_path(AttentionPass::kForward, attention_shape(q, v), params,
                         {out.data, lse.data, q.data, k.data, v.data})) {
    case AttentionPath::kCudnn:
      return cudnn_attention_fwd(ctx, out, lse, q, k, v, params);
    case AttentionPath::kFlash:
      return flash_attention_fwd(ctx, out, lse, q, k, v, params);
    case AttentionPath::kFp32:
      return fp32_attention_fwd(ctx, out, lse, q, k, v, params);
  }
}

void attention_bwd(const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                   const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& out, const Tensor& lse, const AttentionParams& params) {
  if (q.numel() == 0) return;
  switch (attention_path(
      AttentionPass::kBackward, attention_shape(q, v), params,
      {dq.data, dk.data, dv.data, dout.data, q.data, k.data, v.data, out.data, lse.data})) {
    case AttentionPath::kCudnn:
      return cudnn_attention_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, params);
    case AttentionPath::kFlash:
      return flash_attention_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, params);
    case AttentionPath::kFp32:
      return fp32_attention_bwd(ctx, dq, dk, dv, dout, q, k, v, out, lse, params);
  }
}

}  // namespace tmt::cuda
