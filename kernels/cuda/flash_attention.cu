// attention on the tensor cores (formulas in kernels/attention.h, entry points in
// kernels/cuda/flash_attention.h): FlashAttention-2 for bf16 tensors with Dh = 64 or 128. Every
// product runs on mma.sync m16n8k16 with bf16 operands and f32 accumulators (fragment layouts in
// kernels/cuda/mma.cuh); the softmax statistics are f32. Queries may be fewer than keys (the last
// S of Sk positions, kernels/attention.h): the mask, the tiles a block visits and the key rows all
// count from that offset.
//
// Blocks are 4 warps; a warp owns 16 rows of the block's tile and keeps their accumulators in
// registers from the first tile to the last. Tiles sit in shared memory as bf16 rows of Dh + 8
// elements (the 16 bytes of padding put the 8 rows one ldmatrix matrix reads in 8 different groups
// of 4 banks), brought in by cp.async (rows past S zero-filled) and double-buffered: the next tile
// loads while the warps compute on this one, one barrier a tile.
//
//   forward  one block per (64-query tile, head, batch), last tiles (the most keys) first. Q stays
//            in registers as A fragments; for each 64-key tile that a row of the block sees:
//            S = Q Kᵀ, online softmax in the log2 domain (running max m, running sum l of the
//            unrounded P), O = O · 2^(m_old - m) + P V with P rounded to bf16. out = O / l,
//            lse = m ln 2 + ln l.
//   D        one warp per (batch, position, head): D = Σ_d dout ⊙ out, into the caller's
//            workspace (Context::workspace) as [B, H, S] f32, which the two kernels below read.
//   dq       one block per (64-query tile, head, batch): for each 64-key tile the rows see,
//            S = Q Kᵀ, dP = dout Vᵀ, P = exp(scale S - lse), dS = P ⊙ (dP - D), dq += dS K;
//            dq = scale · dq at the end.
//   dk, dv   one block per (64-key tile, kv head, batch): for each query head of the group and
//            each tile of kQ queries (64 at Dh 64, 32 at Dh 128, where dk and dv already take 128
//            accumulator registers a thread) that sees the keys, Sᵀ = K Qᵀ, dPᵀ = V doutᵀ, Pᵀ and
//            dSᵀ as above, dv += Pᵀ dout, dk += dSᵀ Q; dk = scale · dk at the end.
// Tiles that no pair of the block sees are never visited (causal attention does about half the
// work of full attention, a window less still); a visited tile is masked pair by pair only when
// some pair of it is hidden or out of range. Every output element has one writer and a fixed
// order of summation: results are deterministic.
//
// Resources (nvcc 13.0, sm_90a, from cuobjdump -res-usage): registers a thread and dynamic shared
// memory a block; every kernel has a stack frame of 0 bytes (no spills, no local memory), and
// cuobjdump -sass shows HMMA.16816.F32.BF16 for every product, LDSM for ldmatrix, LDGSTS for
// cp.async.
//   forward  Dh 64: 128 registers, 46080 B      Dh 128: 250 registers, 87040 B
//   dq       Dh 64: 167 registers, 55296 B      Dh 128: 240 registers, 104448 B
//   dk, dv   Dh 64: 198 registers, 56320 B      Dh 128: 241 registers, 70144 B
//   D        32 registers, no shared memory
// So two blocks (8 warps) fit on an SM at Dh 128, by registers and by shared memory alike.
#include <climits>
#include <cmath>

#include "kernels/base/workspace.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/flash_attention.h"
#include "kernels/cuda/mma.cuh"

namespace tmt::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kBlockThreads = 32 * kWarps;
constexpr int kQueryTile = 16 * kWarps;  // queries a block (forward, dq): 16 a warp
constexpr int kKeyTile = 64;             // keys a tile (forward, dq) and a block (dk, dv)
constexpr int kPad = 8;                  // bf16 elements of padding after each row in shared memory
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Queries a tile in the dk/dv kernel.
template <int Dh>
constexpr int kBwdQueryTile = Dh == 128 ? 32 : 64;

// Shared-memory bytes a block of each kernel takes.
template <int Dh>
constexpr size_t kFwdSmem = size_t{2} * (kQueryTile + 4 * kKeyTile) * (Dh + kPad);
template <int Dh>
constexpr size_t kDqSmem = size_t{2} * (2 * kQueryTile + 4 * kKeyTile) * (Dh + kPad);
template <int Dh>
constexpr size_t kDkdvSmem =
    size_t{2} * (2 * kKeyTile + 4 * kBwdQueryTile<Dh>)*(Dh + kPad) + size_t{4} *
                                                                         4 * kBwdQueryTile<Dh>;

struct Problem {
  int s;             // queries (S)
  int sk;            // keys (Sk >= S)
  int off;           // Sk - S: query i is the key sequence's position i + off (queries last)
  int h, group;      // query heads; H / Hk query heads share a kv head
  int window;        // 0 = full causal, else 1 .. Sk - 1
  float scale;       // softmax_scale
  float scale_log2;  // softmax_scale · log2(e)
  int64_t q_row;     // elements from one position to the next in q, out, dq, dout: H · Dh
  int64_t k_row;     // ... in k, v, dk, dv: Hk · Dh

  // Whether query i sees key j (and i is a real row).
  __device__ bool visible(int i, int j) const {
    return i < s && j <= i + off && (window == 0 || j > i + off - window);
  }
  // Whether every query of [i0, i0 + rows) is a real row that sees every key of [j0, j0 + cols).
  __device__ bool all_visible(int i0, int rows, int j0, int cols) const {
    return i0 + rows <= s && j0 + cols - 1 <= i0 + off &&
           (window == 0 || j0 > i0 + rows - 1 + off - window);
  }
  // The first key query i sees.
  __device__ int first_key(int i) const {
    return window > 0 && i + off - window + 1 > 0 ? i + off - window + 1 : 0;
  }
  // One past the last key a query of [i0, i0 + rows) sees.
  __device__ int key_end(int i0, int rows) const { return std::min(sk, i0 + rows + off); }
  // The first query that sees key j0.
  __device__ int query_begin(int j0) const { return j0 > off ? j0 - off : 0; }
  // One past the last query that sees some key before j_end.
  __device__ int query_end(int j_end) const {
    return window > 0 ? std::max(0, std::min(s, j_end - 1 + window - off)) : s;
  }
};

// Rows [row0, row0 + kRows) of a sequence (row i at base + i · stride, Dh contiguous bf16) into a
// [kRows][Dh + kPad] tile, 16 bytes a copy; rows at or past s are zero-filled.
template <int Dh, int kRows>
__device__ __forceinline__ void load_rows_async(bf16* tile, const bf16* base, int64_t stride,
                                                int row0, int s) {
  constexpr int kChunks = Dh / 8;  // 16-byte chunks a row
  static_assert(kRows * kChunks % kBlockThreads == 0);
#pragma unroll
  for (int c = 0; c < kRows * kChunks / kBlockThreads; ++c) {
    const int idx = c * kBlockThreads + static_cast<int>(threadIdx.x);
    const int r = idx / kChunks, col = idx % kChunks * 8;
    const bool valid = row0 + r < s;
    cp_async_16(tile + r * (Dh + kPad) + col, valid ? base + (row0 + r) * stride + col : base,
                valid);
  }
}

// The A fragment of rows [row0, row0 + 16), columns [col0, col0 + 16) of a row-major tile.
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const bf16* tile, int ld, int row0,
                                       int col0) {
  const int lane = threadIdx.x % 32;
  ldmatrix_x4(a, tile + (row0 + lane % 16) * ld + col0 + lane / 16 * 8);
}

// B fragments of two n-blocks from a tile stored [n][k] (k contiguous): rows [n0, n0 + 16),
// columns [k0, k0 + 16). b[0], b[1] for n0 .. n0 + 7; b[2], b[3] for n0 + 8 .. n0 + 15.
__device__ __forceinline__ void load_b_nk(uint32_t (&b)[4], const bf16* tile, int ld, int n0,
                                          int k0) {
  const int lane = threadIdx.x % 32;
  ldmatrix_x4(b, tile + (n0 + lane % 8 + lane / 16 * 8) * ld + k0 + lane / 8 % 2 * 8);
}

// B fragments of two n-blocks from a tile stored [k][n] (n contiguous): rows [k0, k0 + 16),
// columns [n0, n0 + 16). b[0], b[1] for n0 .. n0 + 7; b[2], b[3] for n0 + 8 .. n0 + 15.
__device__ __forceinline__ void load_b_kn(uint32_t (&b)[4], const bf16* tile, int ld, int k0,
                                          int n0) {
  const int lane = threadIdx.x % 32;
  ldmatrix_x4_trans(b, tile + (k0 + lane % 8 + lane / 8 % 2 * 8) * ld + n0 + lane / 16 * 8);
}

// The A fragment (k = 16 columns [16 kc, 16 kc + 16)) of accumulators c[n-block][4] rounded to
// bf16: the accumulator layout of two adjacent n-blocks is the A layout of one k-step.
template <int N>
__device__ __forceinline__ void accumulators_to_a(uint32_t (&a)[4], const float (&c)[N][4],
                                                  int kc) {
  a[0] = pack_bf16x2(c[2 * kc][0], c[2 * kc][1]);
  a[1] = pack_bf16x2(c[2 * kc][2], c[2 * kc][3]);
  a[2] = pack_bf16x2(c[2 * kc + 1][0], c[2 * kc + 1][1]);
  a[3] = pack_bf16x2(c[2 * kc + 1][2], c[2 * kc + 1][3]);
}

// acc[n-block][4] (rows row0 + grp and row0 + grp + 8 of a warp's 16, columns 8 nb + 2 quad, + 1)
// times `factor`, rounded to bf16 and stored at base + row · stride + column for rows below s.
template <int N>
__device__ __forceinline__ void store_rows(bf16* base, int64_t stride, int row0, int s,
                                           const float (&acc)[N][4], float factor0, float factor1) {
  const int lane = threadIdx.x % 32, grp = lane / 4, quad = lane % 4;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row0 + grp + 8 * r;
    if (row >= s) continue;
    const float f = r == 0 ? factor0 : factor1;
    bf16* dst = base + row * stride + 2 * quad;
#pragma unroll
    for (int nb = 0; nb < N; ++nb) {
      *reinterpret_cast<uint32_t*>(dst + 8 * nb) =
          pack_bf16x2(acc[nb][2 * r] * f, acc[nb][2 * r + 1] * f);
    }
  }
}

// Two products of a warp's 16 rows over the head dimension, sharing the loop: x += A1 B1ᵀ and
// y += A2 B2ᵀ, with A1, A2 rows [row0, row0 + 16) of [rows][Dh] tiles and B1, B2 [N][Dh] tiles
// (N columns of the results). The backward's S = Q Kᵀ with dP = dout Vᵀ, and their transposes.
template <int Dh, int N>
__device__ __forceinline__ void two_products(float (&x)[N / 8][4], float (&y)[N / 8][4],
                                             const bf16* a1, const bf16* a2, const bf16* b1,
                                             const bf16* b2, int ld, int row0) {
#pragma unroll
  for (int kc = 0; kc < Dh / 16; ++kc) {
    uint32_t fa1[4], fa2[4];
    load_a(fa1, a1, ld, row0, 16 * kc);
    load_a(fa2, a2, ld, row0, 16 * kc);
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      uint32_t b[4];
      load_b_nk(b, b1, ld, 16 * np, 16 * kc);
      mma_bf16_16816(x[2 * np], fa1, b[0], b[1]);
      mma_bf16_16816(x[2 * np + 1], fa1, b[2], b[3]);
      load_b_nk(b, b2, ld, 16 * np, 16 * kc);
      mma_bf16_16816(y[2 * np], fa2, b[0], b[1]);
      mma_bf16_16816(y[2 * np + 1], fa2, b[2], b[3]);
    }
  }
}

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(kFullMask, x, 1));
  return fmaxf(x, __shfl_xor_sync(kFullMask, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(kFullMask, x, 1);
  return x + __shfl_xor_sync(kFullMask, x, 2);
}

template <int Dh>
__global__ void __launch_bounds__(kBlockThreads)
    flash_fwd_kernel(bf16* __restrict__ out, float* __restrict__ lse, const bf16* __restrict__ q,
                     const bf16* __restrict__ k, const bf16* __restrict__ v, const Problem n) {
  constexpr int ld = Dh + kPad;
  extern __shared__ __align__(16) unsigned char flash_smem[];
  bf16* qs = reinterpret_cast<bf16*>(flash_smem);  // [kQueryTile][ld]
  bf16* ks = qs + kQueryTile * ld;                 // [2][kKeyTile][ld]
  bf16* vs = ks + 2 * kKeyTile * ld;               // [2][kKeyTile][ld]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, grp = lane / 4, quad = lane % 4;
  const int i0 = static_cast<int>(gridDim.x - 1 - blockIdx.x) * kQueryTile, hi = blockIdx.y;
  const int64_t batch = static_cast<int64_t>(blockIdx.z) * n.s;       // first query row
  const int64_t key_batch = static_cast<int64_t>(blockIdx.z) * n.sk;  // first key row
  const bf16* qb = q + batch * n.q_row + hi * Dh;  // position i at qb + i · q_row
  const bf16* kb = k + key_batch * n.k_row + hi / n.group * Dh;
  const bf16* vb = v + key_batch * n.k_row + hi / n.group * Dh;
  const int key_begin = n.first_key(i0), key_end = n.key_end(i0, kQueryTile);
  const int tiles = (key_end - key_begin + kKeyTile - 1) / kKeyTile;
  const int row = i0 + 16 * warp + grp;  // this thread's rows: row and row + 8

  load_rows_async<Dh, kQueryTile>(qs, qb, n.q_row, i0, n.s);
  load_rows_async<Dh, kKeyTile>(ks, kb, n.k_row, key_begin, n.sk);
  load_rows_async<Dh, kKeyTile>(vs, vb, n.k_row, key_begin, n.sk);
  cp_async_commit();
  cp_async_wait_all();
  __syncthreads();
  uint32_t qf[Dh / 16][4];
#pragma unroll
  for (int kc = 0; kc < Dh / 16; ++kc) load_a(qf[kc], qs, ld, 16 * warp, 16 * kc);

  float o[Dh / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY};  // running max of the row's scaled scores, log2 units
  float l[2] = {0.0f, 0.0f};            // this thread's part of the running sum
  for (int t = 0; t < tiles; ++t) {
    if (t > 0) {
      cp_async_wait_all();
      __syncthreads();  // tile t is in for every warp, and every warp is done with tile t - 1
    }
    const int j0 = key_begin + t * kKeyTile;
    if (t + 1 < tiles) {  // into the buffer tile t - 1 used
      const int next = (t + 1) % 2 * kKeyTile * ld;
      load_rows_async<Dh, kKeyTile>(ks + next, kb, n.k_row, j0 + kKeyTile, n.sk);
      load_rows_async<Dh, kKeyTile>(vs + next, vb, n.k_row, j0 + kKeyTile, n.sk);
      cp_async_commit();
    }
    const bf16* kt = ks + t % 2 * kKeyTile * ld;
    const bf16* vt = vs + t % 2 * kKeyTile * ld;

    float s[kKeyTile / 8][4] = {};  // S = Q Kᵀ: this warp's 16 rows by 64 keys
#pragma unroll
    for (int kc = 0; kc < Dh / 16; ++kc) {
#pragma unroll
      for (int np = 0; np < kKeyTile / 16; ++np) {
        uint32_t b[4];
        load_b_nk(b, kt, ld, 16 * np, 16 * kc);
        mma_bf16_16816(s[2 * np], qf[kc], b[0], b[1]);
        mma_bf16_16816(s[2 * np + 1], qf[kc], b[2], b[3]);
      }
    }

    const bool full = n.all_visible(i0, kQueryTile, j0, kKeyTile);
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nb = 0; nb < kKeyTile / 8; ++nb) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const bool seen = full || n.visible(row + e / 2 * 8, j0 + 8 * nb + 2 * quad + e % 2);
        s[nb][e] = seen ? s[nb][e] * n.scale_log2 : -INFINITY;
        mx[e / 2] = fmaxf(mx[e / 2], s[nb][e]);
      }
    }
    float base[2], alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float m_new = fmaxf(m[r], quad_max(mx[r]));
      base[r] = m_new == -INFINITY ? 0.0f : m_new;  // a row that has seen nothing yet: P = 0
      alpha[r] = fast_exp2(m[r] - base[r]);
      m[r] = m_new;
      l[r] *= alpha[r];
    }
#pragma unroll
    for (int nb = 0; nb < kKeyTile / 8; ++nb) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nb][e] = fast_exp2(s[nb][e] - base[e / 2]);
        l[e / 2] += s[nb][e];
      }
    }
#pragma unroll
    for (int nd = 0; nd < Dh / 8; ++nd) {
#pragma unroll
      for (int e = 0; e < 4; ++e) o[nd][e] *= alpha[e / 2];
    }

#pragma unroll
    for (int kc = 0; kc < kKeyTile / 16; ++kc) {  // O += P V
      uint32_t pa[4];
      accumulators_to_a(pa, s, kc);
#pragma unroll
      for (int np = 0; np < Dh / 16; ++np) {
        uint32_t b[4];
        load_b_kn(b, vt, ld, 16 * kc, 16 * np);
        mma_bf16_16816(o[2 * np], pa, b[0], b[1]);
        mma_bf16_16816(o[2 * np + 1], pa, b[2], b[3]);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) l[r] = quad_sum(l[r]);  // every real row has seen its own key: l > 0
  store_rows(out + batch * n.q_row + hi * Dh, n.q_row, i0 + 16 * warp, n.s, o, 1.0f / l[0],
             1.0f / l[1]);
  if (quad == 0) {
    float* lse_row = lse + (static_cast<int64_t>(blockIdx.z) * n.h + hi) * n.s;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      if (row + 8 * r < n.s) lse_row[row + 8 * r] = m[r] * kLn2 + logf(l[r]);
    }
  }
}

// D[b, h, i] = Σ_d dout[b, i, h, d] · out[b, i, h, d], one warp a (b, i, h) row.
__global__ void __launch_bounds__(kBlockThreads)
    flash_row_dot_kernel(float* __restrict__ dsum, const bf16* __restrict__ dout,
                         const bf16* __restrict__ out, int64_t rows, int s, int h, int dh) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;  // the whole warp
  const auto* a = reinterpret_cast<const uint32_t*>(dout + r * dh);
  const auto* b = reinterpret_cast<const uint32_t*>(out + r * dh);
  float acc = 0.0f;
  for (int c = lane; c < dh / 2; c += 32) {
    float a0, a1, b0, b1;
    unpack_bf16x2(a[c], a0, a1);
    unpack_bf16x2(b[c], b0, b1);
    acc += a0 * b0 + a1 * b1;
  }
  acc = warp_sum(acc);
  if (lane == 0) {
    const int64_t hi = r % h, i = r / h % s, bi = r / h / s;
    dsum[(bi * h + hi) * s + i] = acc;
  }
}

template <int Dh>
__global__ void __launch_bounds__(kBlockThreads)
    flash_dq_kernel(bf16* __restrict__ dq, const bf16* __restrict__ dout,
                    const bf16* __restrict__ q, const bf16* __restrict__ k,
                    const bf16* __restrict__ v, const float* __restrict__ lse,
                    const float* __restrict__ dsum, const Problem n) {
  constexpr int ld = Dh + kPad;
  extern __shared__ __align__(16) unsigned char flash_smem[];
  bf16* qs = reinterpret_cast<bf16*>(flash_smem);  // [kQueryTile][ld]
  bf16* dos = qs + kQueryTile * ld;                // [kQueryTile][ld]
  bf16* ks = dos + kQueryTile * ld;                // [2][kKeyTile][ld]
  bf16* vs = ks + 2 * kKeyTile * ld;               // [2][kKeyTile][ld]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, grp = lane / 4, quad = lane % 4;
  const int i0 = static_cast<int>(gridDim.x - 1 - blockIdx.x) * kQueryTile, hi = blockIdx.y;
  const int64_t batch = static_cast<int64_t>(blockIdx.z) * n.s;
  const int64_t key_batch = static_cast<int64_t>(blockIdx.z) * n.sk;
  const bf16* kb = k + key_batch * n.k_row + hi / n.group * Dh;
  const bf16* vb = v + key_batch * n.k_row + hi / n.group * Dh;
  const int key_begin = n.first_key(i0), key_end = n.key_end(i0, kQueryTile);
  const int tiles = (key_end - key_begin + kKeyTile - 1) / kKeyTile;
  const int row = i0 + 16 * warp + grp;  // this thread's rows: row and row + 8

  load_rows_async<Dh, kQueryTile>(qs, q + batch * n.q_row + hi * Dh, n.q_row, i0, n.s);
  load_rows_async<Dh, kQueryTile>(dos, dout + batch * n.q_row + hi * Dh, n.q_row, i0, n.s);
  load_rows_async<Dh, kKeyTile>(ks, kb, n.k_row, key_begin, n.sk);
  load_rows_async<Dh, kKeyTile>(vs, vb, n.k_row, key_begin, n.sk);
  cp_async_commit();
  float lse2[2], d[2];  // the rows' lse in log2 units, and D
  const int64_t stats = (static_cast<int64_t>(blockIdx.z) * n.h + hi) * n.s;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = row + 8 * r;
    lse2[r] = i < n.s ? lse[stats + i] * kLog2e : INFINITY;
    d[r] = i < n.s ? dsum[stats + i] : 0.0f;
  }

  float acc[Dh / 8][4] = {};
  for (int t = 0; t < tiles; ++t) {
    cp_async_wait_all();
    __syncthreads();  // tile t is in for every warp, and every warp is done with tile t - 1
    const int j0 = key_begin + t * kKeyTile;
    if (t + 1 < tiles) {
      const int next = (t + 1) % 2 * kKeyTile * ld;
      load_rows_async<Dh, kKeyTile>(ks + next, kb, n.k_row, j0 + kKeyTile, n.sk);
      load_rows_async<Dh, kKeyTile>(vs + next, vb, n.k_row, j0 + kKeyTile, n.sk);
      cp_async_commit();
    }
    const bf16* kt = ks + t % 2 * kKeyTile * ld;
    const bf16* vt = vs + t % 2 * kKeyTile * ld;

    float s[kKeyTile / 8][4] = {}, dp[kKeyTile / 8][4] = {};  // S = Q Kᵀ, dP = dout Vᵀ
    two_products<Dh, kKeyTile>(s, dp, qs, dos, kt, vt, ld, 16 * warp);

    const bool full = n.all_visible(i0, kQueryTile, j0, kKeyTile);
#pragma unroll
    for (int nb = 0; nb < kKeyTile / 8; ++nb) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {  // s becomes dS = P ⊙ (dP - D)
        const bool seen = full || n.visible(row + e / 2 * 8, j0 + 8 * nb + 2 * quad + e % 2);
        const float p = seen ? fast_exp2(s[nb][e] * n.scale_log2 - lse2[e / 2]) : 0.0f;
        s[nb][e] = p * (dp[nb][e] - d[e / 2]);
      }
    }

#pragma unroll
    for (int kc = 0; kc < kKeyTile / 16; ++kc) {  // dq += dS K
      uint32_t a[4];
      accumulators_to_a(a, s, kc);
#pragma unroll
      for (int np = 0; np < Dh / 16; ++np) {
        uint32_t b[4];
        load_b_kn(b, kt, ld, 16 * kc, 16 * np);
        mma_bf16_16816(acc[2 * np], a, b[0], b[1]);
        mma_bf16_16816(acc[2 * np + 1], a, b[2], b[3]);
      }
    }
  }
  store_rows(dq + batch * n.q_row + hi * Dh, n.q_row, i0 + 16 * warp, n.s, acc, n.scale, n.scale);
}

template <int Dh>
__global__ void __launch_bounds__(kBlockThreads)
    flash_dkdv_kernel(bf16* __restrict__ dk, bf16* __restrict__ dv, const bf16* __restrict__ dout,
                      const bf16* __restrict__ q, const bf16* __restrict__ k,
                      const bf16* __restrict__ v, const float* __restrict__ lse,
                      const float* __restrict__ dsum, const Problem n) {
  constexpr int ld = Dh + kPad, kQ = kBwdQueryTile<Dh>;
  extern __shared__ __align__(16) unsigned char flash_smem[];
  bf16* ks = reinterpret_cast<bf16*>(flash_smem);             // [kKeyTile][ld]
  bf16* vs = ks + kKeyTile * ld;                              // [kKeyTile][ld]
  bf16* qs = vs + kKeyTile * ld;                              // [2][kQ][ld]
  bf16* dos = qs + 2 * kQ * ld;                               // [2][kQ][ld]
  float* lses = reinterpret_cast<float*>(dos + 2 * kQ * ld);  // [2][kQ]
  float* ds = lses + 2 * kQ;                                  // [2][kQ]: D
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, grp = lane / 4, quad = lane % 4;
  const int j0 = static_cast<int>(blockIdx.x) * kKeyTile, g = static_cast<int>(blockIdx.y);
  const int64_t batch = static_cast<int64_t>(blockIdx.z) * n.s;
  const int64_t key_batch = static_cast<int64_t>(blockIdx.z) * n.sk;
  const int query_begin = n.query_begin(j0), query_end = n.query_end(j0 + kKeyTile);
  // A head's query tiles; none where the window has passed every key of the tile before the
  // first query (keys far before the queries): dk and dv are then zero.
  const int tiles = std::max(0, (query_end - query_begin + kQ - 1) / kQ);
  const int steps = n.group * tiles;
  const int key = j0 + 16 * warp + grp;  // this thread's keys: key and key + 8

  // Step `step` is query tile step % tiles of query head g · group + step / tiles.
  const auto load_step = [&](int step, int buf) {
    const int hi = g * n.group + step / tiles, i0 = query_begin + step % tiles * kQ;
    load_rows_async<Dh, kQ>(qs + buf * kQ * ld, q + batch * n.q_row + hi * Dh, n.q_row, i0, n.s);
    load_rows_async<Dh, kQ>(dos + buf * kQ * ld, dout + batch * n.q_row + hi * Dh, n.q_row, i0,
                            n.s);
    const int64_t stats = (static_cast<int64_t>(blockIdx.z) * n.h + hi) * n.s;
    const int tid = static_cast<int>(threadIdx.x), c = tid % kQ;
    const bool valid = i0 + c < n.s;
    if (tid < kQ) {
      cp_async_4(lses + buf * kQ + c, lse + stats + (valid ? i0 + c : 0), valid);
    } else if (tid < 2 * kQ) {
      cp_async_4(ds + buf * kQ + c, dsum + stats + (valid ? i0 + c : 0), valid);
    }
  };
  if (steps > 0) {  // else nothing to load: the zero gradients are stored below
    load_rows_async<Dh, kKeyTile>(ks, k + key_batch * n.k_row + g * Dh, n.k_row, j0, n.sk);
    load_rows_async<Dh, kKeyTile>(vs, v + key_batch * n.k_row + g * Dh, n.k_row, j0, n.sk);
    load_step(0, 0);
    cp_async_commit();
  }

  float acc_dk[Dh / 8][4] = {}, acc_dv[Dh / 8][4] = {};
  for (int step = 0; step < steps; ++step) {
    cp_async_wait_all();
    __syncthreads();  // this step's tiles are in, and every warp is done with the last step's
    if (step + 1 < steps) {
      load_step(step + 1, (step + 1) % 2);
      cp_async_commit();
    }
    const int i0 = query_begin + step % tiles * kQ;
    const bf16* qt = qs + step % 2 * kQ * ld;
    const bf16* dot = dos + step % 2 * kQ * ld;
    const float* lse_t = lses + step % 2 * kQ;
    const float* d_t = ds + step % 2 * kQ;

    float st[kQ / 8][4] = {}, dpt[kQ / 8][4] = {};  // Sᵀ = K Qᵀ, dPᵀ = V doutᵀ: 16 keys by kQ
    two_products<Dh, kQ>(st, dpt, ks, vs, qt, dot, ld, 16 * warp);

    const bool full = n.all_visible(i0, kQ, j0, kKeyTile);
#pragma unroll
    for (int nb = 0; nb < kQ / 8; ++nb) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {  // st becomes Pᵀ, dpt becomes dSᵀ = Pᵀ ⊙ (dPᵀ - D)
        const int c = 8 * nb + 2 * quad + e % 2;  // the query, within the tile
        const bool seen = full || n.visible(i0 + c, key + e / 2 * 8);
        const float p = seen ? fast_exp2(st[nb][e] * n.scale_log2 - lse_t[c] * kLog2e) : 0.0f;
        st[nb][e] = p;
        dpt[nb][e] = p * (dpt[nb][e] - d_t[c]);
      }
    }

#pragma unroll
    for (int kc = 0; kc < kQ / 16; ++kc) {  // dv += Pᵀ dout, dk += dSᵀ Q
      uint32_t pa[4], dsa[4];
      accumulators_to_a(pa, st, kc);
      accumulators_to_a(dsa, dpt, kc);
#pragma unroll
      for (int np = 0; np < Dh / 16; ++np) {
        uint32_t b[4];
        load_b_kn(b, dot, ld, 16 * kc, 16 * np);
        mma_bf16_16816(acc_dv[2 * np], pa, b[0], b[1]);
        mma_bf16_16816(acc_dv[2 * np + 1], pa, b[2], b[3]);
        load_b_kn(b, qt, ld, 16 * kc, 16 * np);
        mma_bf16_16816(acc_dk[2 * np], dsa, b[0], b[1]);
        mma_bf16_16816(acc_dk[2 * np + 1], dsa, b[2], b[3]);
      }
    }
  }
  const int64_t at = key_batch * n.k_row + g * Dh;
  store_rows(dk + at, n.k_row, j0 + 16 * warp, n.sk, acc_dk, n.scale, n.scale);
  store_rows(dv + at, n.k_row, j0 + 16 * warp, n.sk, acc_dv, 1.0f, 1.0f);
}

Problem problem_of(const Tensor& q, const Tensor& k, const AttentionParams& p) {
  const int64_t s = q.size(1), sk = k.size(1), h = q.size(2), hk = k.size(2), dh = q.size(3);
  TMT_CHECK(sk <= INT_MAX - 2 * kKeyTile && h <= 65535 && q.size(0) <= 65535,
            "flash attention: q {}, k {} are over the launch limits (Sk < 2^31 - 128, H and B <= "
            "65535)",
            q.str(), k.str());
  Problem n{};
  n.s = static_cast<int>(s);
  n.sk = static_cast<int>(sk);
  n.off = static_cast<int>(sk - s);
  n.h = static_cast<int>(h);
  n.group = static_cast<int>(h / hk);
  n.window = p.window > 0 && p.window < sk ? static_cast<int>(p.window) : 0;  // >= Sk: every key
  n.scale = static_cast<float>(p.softmax_scale);
  n.scale_log2 = static_cast<float>(p.softmax_scale * 1.4426950408889634);  // · log2(e)
  n.q_row = h * dh;
  n.k_row = hk * dh;
  return n;
}

unsigned tiles_of(int64_t n, int tile) { return static_cast<unsigned>((n + tile - 1) / tile); }

// Launches Kernel with kSmem bytes of dynamic shared memory. Past the 48 KiB default, the first
// launch of each kernel raises its limit (an attribute of the function, kept for the process).
template <auto Kernel, size_t kSmem, class... Args>
void launch(const Context& ctx, dim3 grid, Args... args) {
  if constexpr (kSmem > 48 * 1024) {
    static const bool raised = [] {
      TMT_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(kSmem)));
      return true;
    }();
    (void)raised;
  }
  Kernel<<<grid, kBlockThreads, kSmem, stream_of(ctx)>>>(args...);
  TMT_CUDA_CHECK_LAUNCH();
}

// Calls f(std::integral_constant<int, Dh>{}) for a supported head dim.
template <class F>
void with_head_dim(int64_t dh, F&& f) {
  if (dh == 64) return f(std::integral_constant<int, 64>{});
  TMT_CHECK(dh == 128, "flash attention: head dim {} is not 64 or 128", dh);
  f(std::integral_constant<int, 128>{});
}

bf16* bf16_data(const Tensor& t) { return static_cast<bf16*>(t.data); }

// The most dynamic shared memory a block may opt into on this process's device (227 KiB on sm_90,
// 163 KiB on sm_80, 99 KiB on sm_86 and sm_89, where the Dh 128 kernels do not fit).
size_t max_block_smem() {
  static const size_t bytes = [] {
    int device = 0, value = 0;
    TMT_CUDA_CHECK(cudaGetDevice(&device));
    TMT_CUDA_CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    return static_cast<size_t>(value);
  }();
  return bytes;
}

}  // namespace

bool flash_attention_supported(DType dtype, int64_t head_dim, int64_t head_dim_v,
                               std::initializer_list<const void*> data) {
  if (dtype != DType::kBF16 || head_dim_v != head_dim || (head_dim != 64 && head_dim != 128)) {
    return false;
  }
  const size_t smem = head_dim == 64 ? std::max({kFwdSmem<64>, kDqSmem<64>, kDkdvSmem<64>})
                                     : std::max({kFwdSmem<128>, kDqSmem<128>, kDkdvSmem<128>});
  if (smem > max_block_smem()) return false;
  return std::all_of(data.begin(), data.end(),
                     [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; });
}

void flash_attention_fwd(const Context& ctx, const Tensor& out, const Tensor& lse, const Tensor& q,
                         const Tensor& k, const Tensor& v, const AttentionParams& params) {
  if (q.numel() == 0) return;
  const Problem n = problem_of(q, k, params);
  const dim3 grid(tiles_of(n.s, kQueryTile), static_cast<unsigned>(n.h),
                  static_cast<unsigned>(q.size(0)));
  with_head_dim(q.size(3), [&](auto dh) {
    constexpr int Dh = decltype(dh)::value;
    launch<flash_fwd_kernel<Dh>, kFwdSmem<Dh>>(ctx, grid, bf16_data(out), lse.ptr<float>(),
                                               bf16_data(q), bf16_data(k), bf16_data(v), n);
  });
}

size_t flash_attention_bwd_workspace_bytes(int64_t batch, int64_t seq, int64_t heads) {
  return static_cast<size_t>(batch * seq * heads) * sizeof(float);
}

void flash_attention_bwd(const Context& ctx, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                         const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& out, const Tensor& lse, const AttentionParams& params) {
  if (q.numel() == 0) return;
  const Problem n = problem_of(q, k, params);
  const int64_t b = q.size(0), rows = b * n.s * n.h;
  // D in the caller's workspace: the kernels of one stream run in order, so the next op that
  // borrows it starts after the two kernels below have read it.
  float* dsum =
      workspace_for<float>(ctx, flash_attention_bwd_workspace_bytes(b, n.s, n.h), "attention_bwd");
  launch<flash_row_dot_kernel, 0>(ctx, dim3(tiles_of(rows, kWarps)), dsum, bf16_data(dout),
                                  bf16_data(out), rows, n.s, n.h, static_cast<int>(q.size(3)));
  const auto batches = static_cast<unsigned>(b);
  with_head_dim(q.size(3), [&](auto dh) {
    constexpr int Dh = decltype(dh)::value;
    launch<flash_dq_kernel<Dh>, kDqSmem<Dh>>(
        ctx, dim3(tiles_of(n.s, kQueryTile), static_cast<unsigned>(n.h), batches), bf16_data(dq),
        bf16_data(dout), bf16_data(q), bf16_data(k), bf16_data(v), lse.ptr<const float>(), dsum, n);
    launch<flash_dkdv_kernel<Dh>, kDkdvSmem<Dh>>(
        ctx, dim3(tiles_of(n.sk, kKeyTile), static_cast<unsigned>(k.size(2)), batches),
        bf16_data(dk), bf16_data(dv), bf16_data(dout), bf16_data(q), bf16_data(k), bf16_data(v),
        lse.ptr<const float>(), dsum, n);
  });
}

}  // namespace tmt::cuda
