// The emulator's driver (see run.sh): runs flash_attention_fwd / flash_attention_bwd under emu.h
// and compares with the CPU reference as tests/kernels/cuda/attention_test.cpp does (relative error
// by norm; lse to 1e-5, the rest to 5e-3; dq and dk exactly zero where each query sees one key),
// checking also the guard bytes around every output. Prints one line a case and the failures.
#include <cctype>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "emu.h"
#include "kernels/base/workspace.h"
#include "kernels/cpu/attention.h"
#include "kernels/cuda/flash_attention.h"
#include "tests/support/random.h"

using namespace tmt;

struct Case {
  int64_t b, s, h, hk, dh, window;
  int64_t sk = 0;  // keys; 0: S (queries last when more)
  int64_t keys() const { return sk > 0 ? sk : s; }
};
constexpr double kTol = 5e-3;  // kTensorCoreTol of attention_test.cpp

static float round_bf(float x) { return emu::bf2f(emu::f2bf(x)); }

struct DevBuf {  // "device" memory with guards
  std::vector<unsigned char> mem;
  size_t bytes;
  DevBuf(size_t n) : mem(n + 256, 0xab), bytes(n) {}
  void* data() { return mem.data() + 128; }
  bool guards_ok() const {
    for (size_t i = 0; i < 128; ++i)
      if (mem[i] != 0xab || mem[128 + bytes + i] != 0xab) return false;
    return true;
  }
};

static std::vector<float> randn(size_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = round_bf(d(rng));
  return v;
}

static Tensor host_tensor(std::vector<float>& v, Shape s) {
  Tensor t;
  t.data = v.data();
  t.dtype = DType::kF32;
  t.device = Device::kCpu;
  t.shape = s;
  return t;
}

struct Dev {
  DevBuf buf;
  Tensor t;
  Dev(DType dt, Shape s) : buf(size_t(s.numel()) * (dt == DType::kBF16 ? 2 : 4)) {
    t.data = buf.data();
    t.dtype = dt;
    t.device = Device::kCuda;
    t.shape = s;
    std::memset(buf.data(), 0xff, buf.bytes);
    emu::g_global.push_back({buf.data(), buf.bytes});
  }
  ~Dev() {
    for (auto& r : emu::g_global)
      if (r.p == buf.data()) r.n = 0;
  }
  Dev(const Dev&) = delete;
  void set(const std::vector<float>& v) {
    if (t.dtype == DType::kBF16) {
      auto* p = static_cast<uint16_t*>(t.data);
      for (size_t i = 0; i < v.size(); ++i) p[i] = emu::f2bf(v[i]);
    } else
      std::memcpy(t.data, v.data(), v.size() * 4);
  }
  std::vector<double> get() const {
    std::vector<double> r(size_t(t.numel()));
    for (size_t i = 0; i < r.size(); ++i)
      r[i] = t.dtype == DType::kBF16 ? emu::bf2f(static_cast<uint16_t*>(t.data)[i])
                                     : static_cast<float*>(t.data)[i];
    return r;
  }
};

// "Device" memory for the workspace (kernels/base/workspace.h), as cudaMalloc would give it: all
// 0xff (NaN), so a read before the kernels write shows. Readable once run() registers it.
static void use_host_memory_as_device() {
  DeviceAllocator a;
  a.allocate = [](size_t bytes) {
    void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
    std::memset(p, 0xff, bytes);
    return p;
  };
  a.release = [](void* p) {
    for (auto& r : emu::g_global)
      if (r.p == p) r.n = 0;
    std::free(p);
  };
  a.zero = [](void* p, size_t bytes) { std::memset(p, 0, bytes); };
  register_device_allocator(Device::kCuda, a);
}

static int failures = 0;
static double check(const char* what, const std::vector<double>& got,
                    const std::vector<float>& want, double tol) {
  double d2 = 0, w2 = 0;
  long nan = -1, worst = -1;
  double worst_d = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) {
      if (nan < 0) nan = long(i);
      continue;
    }
    const double d = got[i] - want[i];
    d2 += d * d;
    w2 += double(want[i]) * want[i];
    if (std::fabs(d) > worst_d) {
      worst_d = std::fabs(d);
      worst = long(i);
    }
  }
  const double rel = std::sqrt(d2) / std::max(std::sqrt(w2), 1e-300);
  const bool ok = nan < 0 && rel <= tol;
  if (!ok) {
    ++failures;
    std::printf("    FAIL %s: rel %.3g nan@%ld worst@%ld got %g want %g\n", what, rel, nan, worst,
                worst >= 0 ? got[worst] : 0.0, worst >= 0 ? want[worst] : 0.0);
  }
  return nan >= 0 ? INFINITY : rel;
}

static uint64_t g_test_seed = 0;  // nonzero: the inputs attention_test.cpp's check() draws
static std::vector<float> test_input(Shape s, uint64_t seed) {
  std::vector<float> v(size_t(s.numel()));
  test::fill_normal(host_tensor(v, s), seed);
  for (auto& x : v) x = round_bf(x);
  return v;
}
static void run(const Case& c, std::mt19937_64& rng) {
  const Shape qs{c.b, c.s, c.h, c.dh}, ks{c.b, c.keys(), c.hk, c.dh}, ls{c.b, c.h, c.s};
  const AttentionParams p{1.0 / std::sqrt(double(c.dh)), c.window};
  std::vector<float> q, k, v, dout;
  if (g_test_seed) {
    q = test_input(qs, g_test_seed);
    k = test_input(ks, g_test_seed + 1);
    v = test_input(ks, g_test_seed + 2);
    dout = test_input(qs, g_test_seed + 3);
  } else {
    q = randn(qs.numel(), rng);
    k = randn(ks.numel(), rng);
    v = randn(ks.numel(), rng);
    dout = randn(qs.numel(), rng);
  }
  std::vector<float> out(qs.numel()), lse(ls.numel());
  cpu::attention_fwd(host_tensor(out, qs), host_tensor(lse, ls), host_tensor(q, qs),
                     host_tensor(k, ks), host_tensor(v, ks), p);
  Dev qd(DType::kBF16, qs), kd(DType::kBF16, ks), vd(DType::kBF16, ks), dod(DType::kBF16, qs);
  qd.set(q);
  kd.set(k);
  vd.set(v);
  dod.set(dout);
  Dev outd(DType::kBF16, qs), lsed(DType::kF32, ls);
  // The backward's workspace, exactly the bytes it asks for readable (D, B·S·H floats).
  const size_t workspace_bytes = cuda::flash_attention_bwd_workspace_bytes(c.b, c.s, c.h);
  Workspace workspace;
  workspace.reserve(workspace_bytes);
  workspace.allocate(Device::kCuda);
  emu::g_global.push_back({workspace.data(), workspace_bytes});
  const Context ctx{Device::kCuda, nullptr, nullptr, &workspace};
  cuda::flash_attention_fwd(ctx, outd.t, lsed.t, qd.t, kd.t, vd.t, p);
  const double e_out = check("out", outd.get(), out, kTol),
               e_lse = check("lse", lsed.get(), lse, 1e-5);
  // backward from the reference's out, rounded
  for (auto& x : out) x = round_bf(x);
  std::vector<float> dq(qs.numel()), dk(ks.numel()), dv(ks.numel());
  cpu::attention_bwd(host_tensor(dq, qs), host_tensor(dk, ks), host_tensor(dv, ks),
                     host_tensor(dout, qs), host_tensor(q, qs), host_tensor(k, ks),
                     host_tensor(v, ks), host_tensor(out, qs), host_tensor(lse, ls), p);
  Dev outr(DType::kBF16, qs), lser(DType::kF32, ls);
  outr.set(out);
  lser.set(lse);
  Dev dqd(DType::kBF16, qs), dkd(DType::kBF16, ks), dvd(DType::kBF16, ks);
  cuda::flash_attention_bwd(ctx, dqd.t, dkd.t, dvd.t, dod.t, qd.t, kd.t, vd.t, outr.t, lser.t, p);
  const double e_dv = check("dv", dvd.get(), dv, kTol);
  double e_dq, e_dk;
  if (c.keys() > 1 && c.window != 1) {
    e_dq = check("dq", dqd.get(), dq, kTol);
    e_dk = check("dk", dkd.get(), dk, kTol);
  } else {
    double rms = 0;
    for (float x : dv) rms += double(x) * x;
    rms = std::sqrt(rms / dv.size());
    auto maxabs = [](const std::vector<double>& g) {
      double m = 0;
      for (double x : g) m = std::isnan(x) ? INFINITY : std::max(m, std::fabs(x));
      return m;
    };
    e_dq = maxabs(dqd.get()) / rms;
    e_dk = maxabs(dkd.get()) / rms;
    if (!(e_dq <= kTol && e_dk <= kTol)) {
      ++failures;
      std::printf("    FAIL zero dq/dk\n");
    }
  }
  for (Dev* d : {&outd, &lsed, &dqd, &dkd, &dvd})
    if (!d->buf.guards_ok()) {
      ++failures;
      std::printf("    FAIL guard overwritten\n");
    }
  std::printf(
      "B %ld S %4ld Sk %4ld H %ld Hk %ld Dh %3ld w %3ld | out %.2e lse %.2e dq %.2e dk %.2e dv "
      "%.2e\n",
      c.b, c.s, c.keys(), c.h, c.hk, c.dh, c.window, e_out, e_lse, e_dq, e_dk, e_dv);
  std::fflush(stdout);
}

int main(int argc, char** argv) {
  use_host_memory_as_device();
  std::mt19937_64 rng(argc > 1 && std::isdigit(argv[1][0]) ? std::stoull(argv[1]) : 1);
  std::vector<Case> cases;
  if (argc > 2) {
    cases.push_back({std::stol(argv[2]), std::stol(argv[3]), std::stol(argv[4]), std::stol(argv[5]),
                     std::stol(argv[6]), std::stol(argv[7]), argc > 8 ? std::stol(argv[8]) : 0});
  } else if (argc > 1 && std::string(argv[1]) == "queries-last") {  // context parallelism's calls
    for (int64_t dh : {64, 128})
      for (auto [s, sk] : {std::pair{64, 128}, {64, 256}, {40, 200}, {1, 70}, {100, 101}})
        for (int64_t w : {0, 1, 17, 64, 130}) cases.push_back({2, s, 4, 2, dh, w, sk});
  } else {
    for (int64_t dh : {64, 128})
      for (int64_t s : {1, 2, 63, 64, 65, 200, 257})
        for (auto hh : {std::pair{4, 1}, {4, 2}, {4, 4}})
          for (int64_t w : {0, 1, 17, 64}) cases.push_back({2, s, hh.first, hh.second, dh, w});
  }
  if (argc > 1 && std::string(argv[1]) == "test") {  // TensorCoresMatchReference, same seeds
    uint64_t seed = 1000;
    for (auto& c : cases) {
      g_test_seed = (seed += 10);
      run(c, rng);
    }
  } else {
    for (auto& c : cases) run(c, rng);
  }
  std::printf("%d failures\n", failures);
  return failures != 0;
}
