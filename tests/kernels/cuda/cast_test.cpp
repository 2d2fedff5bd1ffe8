// cast on CUDA against the CPU reference: f32 -> bf16 -> f32 must round exactly as the host does.
#include "kernels/cast.h"

#include <gtest/gtest.h>

#include <cstring>

#include "kernels/base/arena.h"
#include "kernels/cuda/runtime.h"
#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

TEST(CudaCast, F32ToBf16MatchesHostRounding) {
  for (int64_t n : {1, 1000, 65537}) {
    Arena host(Device::kCpu, 16 * static_cast<size_t>(n) + 4096, "host");
    Arena dev(Device::kCuda, 16 * static_cast<size_t>(n) + 4096, "device");
    Tensor x = host.alloc(DType::kF32, {n});
    test::fill_normal(x, static_cast<uint64_t>(n), 3.0);
    Tensor want = host.alloc(DType::kBF16, {n});
    cast(Context{}, want, x);

    Tensor dx = dev.alloc(DType::kF32, {n});
    Tensor dy = dev.alloc(DType::kBF16, {n});
    Tensor dz = dev.alloc(DType::kF32, {n});
    cuda::copy(dx.data, x.data, x.nbytes());
    const Context& gpu = test::gpu();
    cast(gpu, dy, dx);
    cast(gpu, dz, dy);
    Tensor got = host.alloc(DType::kBF16, {n});
    Tensor back = host.alloc(DType::kF32, {n});
    cuda::copy(got.data, dy.data, dy.nbytes());
    cuda::copy(back.data, dz.data, dz.nbytes());
    EXPECT_EQ(std::memcmp(got.data, want.data, want.nbytes()), 0) << "n=" << n;
    EXPECT_TRUE(test::all_close(back, want, 0.0)) << "n=" << n;
  }
}

}  // namespace
}  // namespace tmt
