// Tensor views and the arena: shapes, slicing, alignment, zeroing, mark/reset reuse.
#include "kernels/base/tensor.h"

#include <gtest/gtest.h>

#include "kernels/base/arena.h"

namespace tmt {
namespace {

TEST(Tensor, ShapeViewAndSlice) {
  Arena a(Device::kCpu, 4096, "test");
  Tensor t = a.alloc(DType::kF32, {4, 3, 2});
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 96u);
  EXPECT_EQ(t.str(), "f32[4, 3, 2] cpu");
  float* p = t.ptr<float>();
  for (int i = 0; i < 24; ++i) p[i] = static_cast<float>(i);
  Tensor rows = t.slice(1, 3);
  EXPECT_EQ(rows.shape, (Shape{2, 3, 2}));
  EXPECT_EQ(rows.ptr<float>()[0], 6.0f);
  Tensor flat = t.view({24});
  EXPECT_EQ(flat.ptr<float>()[23], 23.0f);
  EXPECT_EQ(t.shape[-1], 2);
}

TEST(Arena, AlignsZeroesAndReuses) {
  Arena a(Device::kCpu, 10000, "test");
  Tensor x = a.alloc(DType::kBF16, {3});
  Tensor y = a.alloc(DType::kF64, {5});
  EXPECT_EQ(reinterpret_cast<uintptr_t>(x.data) % Arena::kAlignment, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(y.data) % Arena::kAlignment, 0u);
  EXPECT_EQ(a.used(), 2 * Arena::kAlignment);
  const size_t m = a.mark();
  Tensor z = a.alloc(DType::kF32, {100});
  z.ptr<float>()[7] = 5.0f;
  a.reset(m);
  Tensor w = a.alloc(DType::kF32, {100});
  EXPECT_EQ(w.data, z.data);
  EXPECT_EQ(w.ptr<float>()[7], 0.0f);  // handed out zeroed again
  EXPECT_EQ(a.peak(), m + Arena::footprint(DType::kF32, {100}));
}

TEST(Arena, CountingArenaSizesTheRealOneExactly) {
  auto allocate = [](Arena& a) {
    a.alloc(DType::kF32, {7, 3});
    const size_t m = a.mark();
    a.alloc(DType::kBF16, {1000});  // scratch, released
    a.reset(m);
    a.alloc(DType::kI64, {5});
  };
  Arena counting = Arena::counting(Device::kCpu);
  allocate(counting);
  EXPECT_TRUE(counting.is_counting());
  EXPECT_EQ(counting.peak(),
            Arena::footprint(DType::kF32, {7, 3}) + Arena::footprint(DType::kBF16, {1000}));
  Arena real(Device::kCpu, counting.peak(), "real");
  allocate(real);  // fits exactly: a TMT_CHECK would stop the test otherwise
  EXPECT_EQ(real.peak(), counting.peak());
}

}  // namespace
}  // namespace tmt
