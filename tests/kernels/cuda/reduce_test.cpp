// copy and reduce (sum_squares, scale, add) on CUDA against the CPU reference, on fresh random
// inputs of ragged sizes: f32 and f64 to 1e-5 (sum_squares far tighter), bf16 to 1e-2 against the
// reference run in f32 on the bf16-rounded inputs.
#include "kernels/reduce.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "kernels/copy.h"
#include "tests/support/compare.h"
#include "tests/support/cuda_io.h"
#include "tests/support/random.h"

namespace tmt {
namespace {

const Context kCpu{};
constexpr int64_t kSizes[] = {1, 37, 1001, 65537, (1 << 20) + 3};

size_t arena_bytes(int64_t n) { return 8 * 8 * static_cast<size_t>(n) + (1 << 16); }

double tolerance(DType dtype) { return dtype == DType::kBF16 ? 1e-2 : 1e-5; }

// The reference runs in f64 for f64 tensors and in f32 otherwise.
DType reference_dtype(DType dtype) { return dtype == DType::kF64 ? DType::kF64 : DType::kF32; }

TEST(CudaCopy, CopiesEveryByte) {
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kI32}) {
    for (int64_t n : kSizes) {
      Arena host(Device::kCpu, arena_bytes(n), "host");
      Arena dev(Device::kCuda, arena_bytes(n), "device");
      Tensor x = host.alloc(dtype, {n});
      test::fill_uniform(x, static_cast<uint64_t>(n), -100.0, 100.0);
      Tensor src = test::to_device(dev, x);
      Tensor dst = dev.alloc(dtype, {n});
      test::poison(dst);
      copy(test::gpu(), dst, src);
      Tensor got = test::to_host(host, dst);
      EXPECT_EQ(std::memcmp(got.data, x.data, x.nbytes()), 0) << dtype_name(dtype) << " n=" << n;
    }
  }
}

TEST(CudaReduce, SumSquaresMatchesAndIsDeterministic) {
  for (DType dtype : {DType::kF32, DType::kF64, DType::kBF16}) {
    for (int64_t n : kSizes) {
      Arena host(Device::kCpu, arena_bytes(n), "host");
      Arena dev(Device::kCuda, arena_bytes(n), "device");
      Tensor x = host.alloc(reference_dtype(dtype), {n});
      test::fill_normal(x, 100 + static_cast<uint64_t>(n), 2.0);
      test::round_to(x, dtype);
      const double want = sum_squares(kCpu, x);
      Tensor xd = test::to_device_as(dev, host, x, dtype);
      const double got = sum_squares(test::gpu(), xd);
      const double again = sum_squares(test::gpu(), xd);
      ASSERT_TRUE(std::isfinite(got)) << dtype_name(dtype) << " n=" << n;
      EXPECT_LE(std::fabs(got - want), 1e-10 * want) << dtype_name(dtype) << " n=" << n;
      EXPECT_EQ(std::memcmp(&got, &again, sizeof got), 0) << "not deterministic, n=" << n;
    }
  }
  Arena dev(Device::kCuda, 1 << 12, "device");
  EXPECT_EQ(sum_squares(test::gpu(), dev.alloc(DType::kF32, {0})), 0.0);
}

TEST(CudaReduce, ScaleAndAdd) {
  for (DType dtype : {DType::kF32, DType::kF64, DType::kBF16}) {
    for (int64_t n : kSizes) {
      Arena host(Device::kCpu, arena_bytes(n), "host");
      Arena dev(Device::kCuda, arena_bytes(n), "device");
      const DType ref = reference_dtype(dtype);
      Tensor x = host.alloc(ref, {n}), y = host.alloc(ref, {n});
      test::fill_normal(x, 200 + static_cast<uint64_t>(n));
      test::fill_normal(y, 300 + static_cast<uint64_t>(n));
      test::round_to(x, dtype);
      test::round_to(y, dtype);
      Tensor xd = test::to_device_as(dev, host, x, dtype);
      Tensor yd = test::to_device_as(dev, host, y, dtype);

      scale(kCpu, x, -0.37);
      scale(test::gpu(), xd, -0.37);
      EXPECT_TRUE(test::all_close(test::to_host(host, xd), x, tolerance(dtype)))
          << "scale " << dtype_name(dtype) << " n=" << n;

      // y += 1.7 x, starting from the scaled x on both sides (the device copy rounded as stored).
      Tensor x_now = test::to_host(host, xd);
      Tensor x_ref = test::converted(host, x_now, ref);
      add(kCpu, y, x_ref, 1.7);
      add(test::gpu(), yd, xd, 1.7);
      EXPECT_TRUE(test::all_close(test::to_host(host, yd), y, tolerance(dtype)))
          << "add " << dtype_name(dtype) << " n=" << n;
    }
  }
}

}  // namespace
}  // namespace tmt
