// adamw on CUDA against the CPU reference over a flat f32 group of ragged size: several steps
// (bias corrections change), weight decay, a gradient scale; param, m and v compared to 1e-5, and
// the parameters' change over the steps (small beside the parameters, so a wrong update could hide
// in the first comparison) to 1e-4: both sides round the new parameter to f32, an error of about
// 1e-7 |param| against a change of about lr |param|.
#include "kernels/adamw.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/cast.h"
#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};

TEST(CudaAdamW, StepsMatchReference) {
  for (int64_t n : {1, 1001, 1234567}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    const size_t bytes = 8 * 4 * static_cast<size_t>(n) + 65536;
    Arena host(Device::kCpu, bytes, "host");
    Arena dev(Device::kCuda, bytes, "device");
    Tensor param = host.alloc(DType::kF32, {n}), grad = host.alloc(DType::kF32, {n});
    Tensor m = host.alloc(DType::kF32, {n}), v = host.alloc(DType::kF32, {n});
    test::fill_normal(param, static_cast<uint64_t>(n));
    const std::vector<double> param0 = test::to_doubles(param);
    Tensor paramd = test::to_device(dev, param), gradd = dev.alloc(DType::kF32, {n});
    Tensor md = test::to_device(dev, m), vd = test::to_device(dev, v);

    AdamWParams p;
    p.lr = 1e-2;
    p.weight_decay = 0.1;
    p.grad_scale = 0.5;
    for (int64_t step = 1; step <= 3; ++step) {
      p.step = step;
      test::fill_normal(grad, static_cast<uint64_t>(n) * 10 + static_cast<uint64_t>(step), 3.0);
      cuda::copy(gradd.data, grad.data, grad.nbytes());
      adamw_step(kCpu, param, grad, m, v, p);
      adamw_step(test::gpu(), paramd, gradd, md, vd, p);
    }
    const std::vector<double> got = test::to_doubles(test::to_host(host, paramd));
    const std::vector<double> want = test::to_doubles(param);
    test::expect_close(got, want, 1e-5, "param");
    std::vector<double> got_change(got.size()), want_change(want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      got_change[i] = got[i] - param0[i];
      want_change[i] = want[i] - param0[i];
    }
    test::expect_close(got_change, want_change, 1e-4, "param change");
    test::expect_close(test::to_doubles(test::to_host(host, md)), test::to_doubles(m), 1e-5, "m");
    test::expect_close(test::to_doubles(test::to_host(host, vd)), test::to_doubles(v), 1e-5, "v");
  }
}

// The bf16 copy written in the same pass: bit for bit the device's own cast of its new parameters.
TEST(CudaAdamW, Bf16CopyEqualsCastOfTheNewParameters) {
  constexpr int64_t kN = 100003;
  Arena host(Device::kCpu, 32 * kN + 65536, "host");
  Arena dev(Device::kCuda, 32 * kN + 65536, "device");
  Tensor param = host.alloc(DType::kF32, {kN}), grad = host.alloc(DType::kF32, {kN});
  test::fill_normal(param, 11);
  test::fill_normal(grad, 12);
  Tensor pd = test::to_device(dev, param), gd = test::to_device(dev, grad);
  Tensor md = dev.alloc(DType::kF32, {kN}), vd = dev.alloc(DType::kF32, {kN});
  Tensor fused = dev.alloc(DType::kBF16, {kN}), cast_after = dev.alloc(DType::kBF16, {kN});
  test::poison(fused);
  AdamWParams p;
  p.lr = 1e-2;
  p.weight_decay = 0.1;
  adamw_step(test::gpu(), pd, gd, md, vd, p, fused);
  cast(test::gpu(), cast_after, pd);
  const Tensor a = test::to_host(host, fused), b = test::to_host(host, cast_after);
  int64_t differ = 0;
  for (int64_t i = 0; i < kN; ++i) differ += a.ptr<uint16_t>()[i] != b.ptr<uint16_t>()[i] ? 1 : 0;
  EXPECT_EQ(differ, 0);
}

}  // namespace
}  // namespace tmt
