// A SIMT emulator for one CUDA block at a time: each thread is a ucontext fiber; warp collectives
// (mma.sync, ldmatrix, shfl) and __syncthreads are barriers among fibers. Random scheduling.
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
namespace emu {
[[noreturn]] inline void die(const char* what) {
  std::fprintf(stderr, "EMU ERROR: %s\n", what);
  std::abort();
}
struct Copy {
  void* dst;
  const void* src;
  int bytes;
  bool valid;
};
struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack;
  dim3 tid;
  bool done = false;
  std::vector<Copy> pending;
};
struct Barrier {
  int count = 0, expected = 0;
  unsigned gen = 0;
};
struct Warp {
  uint32_t a[32][4], b[32][2];
  const void* addr[32];
  uint32_t val[32];
  Barrier bar;
};
inline dim3 g_block_idx, g_grid_dim, g_block_dim;
inline std::vector<Fiber> g_fibers;
inline std::vector<Warp> g_warps;
inline Barrier g_block_bar;
inline int g_current = -1;
inline ucontext_t g_sched;
inline std::vector<unsigned char> g_smem;
inline size_t g_smem_bytes = 0;
inline std::function<void()> g_body;
inline long g_progress = 0;
inline std::mt19937_64 g_rng(12345);
struct Region {
  const void* p;
  size_t n;
};
inline std::vector<Region> g_global;  // readable global memory

inline void yield() { swapcontext(&g_fibers[g_current].ctx, &g_sched); }
inline void arrive(Barrier& b) {
  ++g_progress;
  const unsigned gen = b.gen;
  if (++b.count == b.expected) {
    b.count = 0;
    ++b.gen;
  } else {
    while (b.gen == gen) yield();
  }
}
inline const dim3& thread_idx() { return g_fibers[g_current].tid; }
inline int linear_tid() { return (int)thread_idx().x; }
inline int lane() { return linear_tid() % 32; }
inline Warp& warp() { return g_warps[linear_tid() / 32]; }
inline unsigned char* smem() { return g_smem.data(); }

inline void check_smem(const void* p, int bytes, int align) {
  auto* c = static_cast<const unsigned char*>(p);
  if (c < g_smem.data() || c + bytes > g_smem.data() + g_smem_bytes)
    die("shared access out of range");
  if ((c - g_smem.data()) % align != 0) die("misaligned shared access");
}
inline void check_global(const void* p, int bytes) {
  auto* c = static_cast<const unsigned char*>(p);
  for (auto& r : g_global) {
    auto* b = static_cast<const unsigned char*>(r.p);
    if (c >= b && c + bytes <= b + r.n) return;
  }
  die("global read out of range");
}
inline void do_copy(const Copy& c) {
  if (c.valid)
    std::memcpy(c.dst, c.src, c.bytes);
  else
    std::memset(c.dst, 0, c.bytes);
}

inline void trampoline() {
  g_body();
  g_fibers[g_current].done = true;
  ++g_progress;
  if (!g_fibers[g_current].pending.empty()) die("thread exited with cp.async pending");
  swapcontext(&g_fibers[g_current].ctx, &g_sched);
}

template <class K, class... Args>
void launch(K kernel, dim3 grid, int threads, size_t smem_bytes, Args... args) {
  g_grid_dim = grid;
  g_block_dim = dim3(threads);
  g_smem_bytes = smem_bytes;
  g_smem.assign(smem_bytes + 16, 0xff);
  g_body = [&] { kernel(args...); };
  const int nw = (threads + 31) / 32;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        g_block_idx = dim3(bx, by, bz);
        std::fill(g_smem.begin(), g_smem.end(), 0xff);  // NaN poison
        g_fibers.assign(threads, Fiber{});
        g_warps.assign(nw, Warp{});
        for (auto& w : g_warps) w.bar.expected = 32;
        g_block_bar = Barrier{0, threads, 0};
        for (int t = 0; t < threads; ++t) {
          Fiber& f = g_fibers[t];
          f.tid = dim3(t);
          f.stack.resize(1 << 18);
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = f.stack.data();
          f.ctx.uc_stack.ss_size = f.stack.size();
          f.ctx.uc_link = nullptr;
          makecontext(&f.ctx, trampoline, 0);
        }
        std::vector<int> order(threads);
        for (int t = 0; t < threads; ++t) order[t] = t;
        int alive = threads;
        while (alive > 0) {
          const long before = g_progress;
          std::shuffle(order.begin(), order.end(), g_rng);
          for (int t : order) {
            if (g_fibers[t].done) continue;
            g_current = t;
            swapcontext(&g_sched, &g_fibers[t].ctx);
          }
          alive = 0;
          for (auto& f : g_fibers) alive += !f.done;
          if (alive > 0 && g_progress == before) die("deadlock");
        }
        g_current = -1;
      }
}

// ---- collectives ----
inline uint16_t half_of(uint32_t r, int h) {
  return static_cast<uint16_t>(h ? r >> 16 : r & 0xffff);
}
inline float bf2f(uint16_t b) {
  uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t f2bf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}
inline void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  Warp& w = warp();
  const int l = lane();
  for (int i = 0; i < 4; ++i) w.a[l][i] = a[i];
  w.b[l][0] = b0;
  w.b[l][1] = b1;
  arrive(w.bar);
  const int grp = l / 4, quad = l % 4;
  float res[4];
  for (int e = 0; e < 4; ++e) {
    const int row = grp + (e >= 2 ? 8 : 0), col = 2 * quad + (e & 1);
    double sum = 0;
    for (int k = 0; k < 16; ++k) {
      const float av =
          bf2f(half_of(w.a[(row % 8) * 4 + (k % 8) / 2][row / 8 + 2 * (k / 8)], k % 2));
      const float bv = bf2f(half_of(w.b[col * 4 + (k % 8) / 2][k / 8], k % 2));
      sum += double(av) * double(bv);
    }
    res[e] = float(double(d[e]) + sum);
  }
  arrive(w.bar);
  for (int e = 0; e < 4; ++e) d[e] = res[e];
}
inline void ldmatrix(uint32_t (&r)[4], const void* p, bool trans) {
  Warp& w = warp();
  const int l = lane();
  check_smem(p, 16, 16);
  w.addr[l] = p;
  arrive(w.bar);
  for (int m = 0; m < 4; ++m) {
    uint16_t e[2];
    for (int h = 0; h < 2; ++h) {
      const unsigned char* row;
      int col;
      if (!trans) {
        row = static_cast<const unsigned char*>(w.addr[m * 8 + l / 4]);
        col = 2 * (l % 4) + h;
      } else {
        row = static_cast<const unsigned char*>(w.addr[m * 8 + 2 * (l % 4) + h]);
        col = l / 4;
      }
      std::memcpy(&e[h], row + 2 * col, 2);
    }
    r[m] = uint32_t(e[0]) | (uint32_t(e[1]) << 16);
  }
  arrive(w.bar);
}
inline float shfl_xor(float v, int delta) {
  Warp& w = warp();
  const int l = lane();
  std::memcpy(&w.val[l], &v, 4);
  arrive(w.bar);
  float o;
  std::memcpy(&o, &w.val[l ^ delta], 4);
  arrive(w.bar);
  return o;
}
inline void cp_async(void* dst, const void* src, int bytes, bool valid) {
  check_smem(dst, bytes, bytes);
  if (valid) check_global(src, bytes);
  if (valid && (reinterpret_cast<uintptr_t>(src) % bytes)) die("misaligned cp.async source");
  Copy c{dst, src, bytes, valid};
  if (g_rng() % 2)
    do_copy(c);
  else
    g_fibers[g_current].pending.push_back(c);
}
inline void cp_wait_all() {
  for (auto& c : g_fibers[g_current].pending) do_copy(c);
  g_fibers[g_current].pending.clear();
}
}  // namespace emu

#define threadIdx (::emu::thread_idx())
#define blockIdx (::emu::g_block_idx)
#define gridDim (::emu::g_grid_dim)
#define blockDim (::emu::g_block_dim)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
inline void __syncthreads() { ::emu::arrive(::emu::g_block_bar); }
inline float __shfl_xor_sync(unsigned, float v, int d) { return ::emu::shfl_xor(v, d); }
