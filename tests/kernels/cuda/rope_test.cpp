// rope on CUDA against the CPU reference: the tables (plain and YaRN, f32 and bf16) and the
// rotation forward and backward (f32; bf16 with f32 or bf16 tables; in place), on random positions,
// in both layouts, with partial rotary and with a position scale; the position scale table.
// f32 to 1e-5, bf16 to 1e-2 against the reference run in f32 on the bf16-rounded inputs.
#include "kernels/rope.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};

RopeParams yarn(int64_t head_dim) {
  RopeParams p;
  p.head_dim = head_dim;
  p.theta = 1e6;
  p.scaling = RopeScalingType::kYarn;
  p.factor = 8.0;
  p.original_max_seq_len = 64;
  p.mscale = 1.0;
  p.mscale_all_dim = 0.5;
  return p;
}

RopeParams plain(int64_t head_dim) {
  RopeParams p;
  p.head_dim = head_dim;
  return p;
}

TEST(CudaRope, TablesMatchReference) {
  for (const RopeParams& p : {plain(2), plain(64), plain(128), yarn(64), yarn(128)}) {
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + " Dh=" + std::to_string(p.head_dim) +
                   (p.scaling == RopeScalingType::kYarn ? " yarn" : ""));
      const int64_t s_max = 1001, half = p.head_dim / 2;
      Arena host(Device::kCpu, 8 * 8 * static_cast<size_t>(s_max * half) + 4096, "host");
      Arena dev(Device::kCuda, 8 * 8 * static_cast<size_t>(s_max * half) + 4096, "device");
      Tensor c = host.alloc(DType::kF32, {s_max, half}), s = host.alloc(DType::kF32, {s_max, half});
      rope_tables(kCpu, c, s, p);
      test::round_to(c, dtype);
      test::round_to(s, dtype);
      Tensor cd = dev.alloc(dtype, {s_max, half}), sd = dev.alloc(dtype, {s_max, half});
      test::poison(cd);
      test::poison(sd);
      rope_tables(test::gpu(), cd, sd, p);
      // Both sides round the same double values; the tolerance is f32's whatever the dtype.
      test::expect_close(test::to_doubles(test::to_host(host, cd)), test::to_doubles(c), 1e-5,
                         "cos");
      test::expect_close(test::to_doubles(test::to_host(host, sd)), test::to_doubles(s), 1e-5,
                         "sin");
    }
  }
}

TEST(CudaRope, PositionScaleMatchesReference) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    const int64_t s_max = 5000;
    Arena host(Device::kCpu, 16 * s_max + 4096, "host");
    Arena dev(Device::kCuda, 16 * s_max + 4096, "device");
    Tensor g = host.alloc(DType::kF32, {s_max});
    rope_position_scale(kCpu, g, 0.1, 64);
    test::round_to(g, dtype);
    Tensor gd = dev.alloc(dtype, {s_max});
    test::poison(gd);
    rope_position_scale(test::gpu(), gd, 0.1, 64);
    test::expect_close(test::to_doubles(test::to_host(host, gd)), test::to_doubles(g), 1e-5,
                       "scale");
  }
}

// How a case applies the tables: layout, rotary dims (0 = all), and whether it scales by position.
struct Variant {
  RopeLayout layout = RopeLayout::kHalf;
  int64_t rotary_dim = 0;
  bool scaled = false;
};

void check_apply(DType dtype, DType table_dtype, int64_t tokens, int64_t heads, int64_t dh,
                 uint64_t seed, Variant v = {}) {
  SCOPED_TRACE(std::string(dtype_name(dtype)) + " tables " + std::string(dtype_name(table_dtype)) +
               " T=" + std::to_string(tokens) + " H=" + std::to_string(heads) +
               " Dh=" + std::to_string(dh) + " Dr=" + std::to_string(v.rotary_dim) +
               (v.layout == RopeLayout::kInterleaved ? " interleaved" : "") +
               (v.scaled ? " scaled" : ""));
  const int64_t s_max = 300, half = (v.rotary_dim > 0 ? v.rotary_dim : dh) / 2;
  const size_t bytes = 8 * 8 * static_cast<size_t>(tokens * heads * dh + s_max * half) + 65536;
  Arena host(Device::kCpu, bytes, "host");
  Arena dev(Device::kCuda, bytes, "device");
  const double tol = dtype == DType::kBF16 ? 1e-2 : 1e-5;

  Tensor c = host.alloc(DType::kF32, {s_max, half}), s = host.alloc(DType::kF32, {s_max, half});
  RopeParams params = yarn(dh);
  params.rotary_dim = v.rotary_dim;
  rope_tables(kCpu, c, s, params);
  test::round_to(c, table_dtype);
  test::round_to(s, table_dtype);
  RopeApply how{.layout = v.layout}, how_d{.layout = v.layout};
  if (v.scaled) {
    how.scale = host.alloc(DType::kF32, {s_max});
    rope_position_scale(kCpu, how.scale, 0.1, 16);
    test::round_to(how.scale, table_dtype);
    how_d.scale = test::to_device_as(dev, host, how.scale, table_dtype);
  }
  Tensor pos = host.alloc(DType::kI32, {tokens});
  test::fill_uniform(pos, seed, 0.0, static_cast<double>(s_max));
  Tensor x = host.alloc(DType::kF32, {tokens, heads, dh});
  Tensor dy = host.alloc(DType::kF32, {tokens, heads, dh});
  test::fill_normal(x, seed + 1);
  test::fill_normal(dy, seed + 2);
  test::round_to(x, dtype);
  test::round_to(dy, dtype);

  Tensor cd = test::to_device_as(dev, host, c, table_dtype);
  Tensor sd = test::to_device_as(dev, host, s, table_dtype);
  Tensor posd = test::to_device(dev, pos);
  Tensor xd = test::to_device_as(dev, host, x, dtype);
  Tensor dyd = test::to_device_as(dev, host, dy, dtype);

  Tensor y = host.alloc(DType::kF32, {tokens, heads, dh});
  rope_fwd(kCpu, y, x, pos, c, s, how);
  Tensor yd = dev.alloc(dtype, {tokens, heads, dh});
  test::poison(yd);
  rope_fwd(test::gpu(), yd, xd, posd, cd, sd, how_d);
  test::expect_close(test::to_doubles(test::to_host(host, yd)), test::to_doubles(y), tol, "out");

  // Backward in place (din may alias dout).
  Tensor dx = host.alloc(DType::kF32, {tokens, heads, dh});
  rope_bwd(kCpu, dx, dy, pos, c, s, how);
  rope_bwd(test::gpu(), dyd, dyd, posd, cd, sd, how_d);
  test::expect_close(test::to_doubles(test::to_host(host, dyd)), test::to_doubles(dx), tol, "din");
}

TEST(CudaRope, ApplyMatchesReference) {
  uint64_t seed = 1;
  for (auto [dtype, table] :
       {std::pair{DType::kF32, DType::kF32}, std::pair{DType::kBF16, DType::kF32},
        std::pair{DType::kBF16, DType::kBF16}}) {
    check_apply(dtype, table, 5, 1, 2, seed += 10);
    check_apply(dtype, table, 37, 3, 64, seed += 10);
    check_apply(dtype, table, 257, 8, 128, seed += 10);
    check_apply(dtype, table, 37, 3, 64, seed += 10, {.layout = RopeLayout::kInterleaved});
    check_apply(dtype, table, 37, 3, 64, seed += 10, {.rotary_dim = 16});
    check_apply(dtype, table, 37, 3, 64, seed += 10, {.scaled = true});
    check_apply(dtype, table, 101, 4, 128, seed += 10,
                {.layout = RopeLayout::kInterleaved, .rotary_dim = 32, .scaled = true});
  }
}

}  // namespace
}  // namespace tmt
