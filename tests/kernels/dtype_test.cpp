// Host conversions of the low-precision formats: known encodings, rounding ties to even, overflow
// and subnormals, and every code of each format surviving a round trip.
#include "kernels/base/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

namespace tmt {
namespace {

TEST(DType, SizesAndNames) {
  EXPECT_EQ(dtype_size(DType::kBF16), 2u);
  EXPECT_EQ(dtype_size(DType::kF8E4M3), 1u);
  EXPECT_EQ(dtype_size(DType::kI64), 8u);
  for (DType t : {DType::kF64, DType::kF32, DType::kBF16, DType::kF16, DType::kF8E4M3,
                  DType::kF8E5M2, DType::kI32, DType::kI64}) {
    EXPECT_EQ(parse_dtype(dtype_name(t)), t);
  }
  EXPECT_FALSE(parse_dtype("f12").has_value());
}

TEST(DType, Bf16KnownValuesAndTiesToEven) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(float_to_bf16(-2.0f), 0xC000);
  // 1 + 2^-8 lies halfway between 1 (even mantissa) and 1 + 2^-7: rounds to 1.
  EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  // 1 + 3·2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6: rounds up to the even one.
  EXPECT_EQ(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isinf(bf16_to_float(float_to_bf16(3.4e38f))));  // rounds past the largest bf16
}

TEST(DType, F16AgainstTheCompilersFloat16) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-12.0f, 12.0f);
  for (int i = 0; i < 100000; ++i) {
    const float x =
        std::ldexp(u(rng), static_cast<int>(u(rng) * 2));  // spans subnormals to overflow
    const auto want = static_cast<_Float16>(x);
    uint16_t want_bits;
    std::memcpy(&want_bits, &want, 2);
    ASSERT_EQ(float_to_f16(x), want_bits) << "x = " << x;
  }
  EXPECT_EQ(float_to_f16(65504.0f), 0x7BFF);
  EXPECT_EQ(float_to_f16(65520.0f), 0x7C00);  // halfway to 2^16 rounds to even: infinity
  EXPECT_EQ(float_to_f16(std::ldexp(1.0f, -24)), 0x0001);
}

TEST(DType, Fp8KnownEncodings) {
  EXPECT_EQ(float_to_f8e4m3(1.0f), 0x38);
  EXPECT_EQ(float_to_f8e4m3(448.0f), 0x7E);
  EXPECT_EQ(float_to_f8e4m3(1000.0f), 0x7E);  // saturates: e4m3 has no infinity
  EXPECT_EQ(float_to_f8e4m3(-1000.0f), 0xFE);
  EXPECT_EQ(float_to_f8e4m3(std::ldexp(1.0f, -9)), 0x01);  // smallest subnormal
  EXPECT_EQ(float_to_f8e4m3(std::numeric_limits<float>::quiet_NaN()) & 0x7F, 0x7F);
  EXPECT_TRUE(std::isnan(f8e4m3_to_float(0x7F)));
  EXPECT_EQ(f8e4m3_to_float(0x7E), 448.0f);
  EXPECT_EQ(float_to_f8e5m2(1.0f), 0x3C);
  EXPECT_EQ(float_to_f8e5m2(57344.0f), 0x7B);
  EXPECT_EQ(float_to_f8e5m2(std::numeric_limits<float>::infinity()), 0x7C);
  EXPECT_EQ(float_to_f8e5m2(1e6f), 0x7C);
  EXPECT_EQ(f8e5m2_to_float(0x01), std::ldexp(1.0f, -16));
  // 1.0625 = 1 + 2^-4 is halfway between 1 and 1.125 in e4m3: ties to even -> 1.0
  EXPECT_EQ(float_to_f8e4m3(1.0625f), 0x38);
  EXPECT_EQ(float_to_f8e4m3(1.1875f), 0x3A);  // halfway between 1.125 (odd) and 1.25: up
}

TEST(DType, EveryCodeRoundTrips) {
  for (uint32_t c = 0; c < 256; ++c) {
    const float a = f8e4m3_to_float(static_cast<uint8_t>(c));
    if (!std::isnan(a)) {
      EXPECT_EQ(float_to_f8e4m3(a), c) << c;
    }
    const float b = f8e5m2_to_float(static_cast<uint8_t>(c));
    if (!std::isnan(b)) {
      EXPECT_EQ(float_to_f8e5m2(b), c) << c;
    }
  }
  for (uint32_t c = 0; c < 65536; ++c) {
    const float h = f16_to_float(static_cast<uint16_t>(c));
    if (!std::isnan(h)) {
      EXPECT_EQ(float_to_f16(h), c) << c;
    }
    const float b = bf16_to_float(static_cast<uint16_t>(c));
    if (!std::isnan(b)) {
      EXPECT_EQ(float_to_bf16(b), c) << c;
    }
  }
}

TEST(DType, LoadStoreElement) {
  uint16_t bf[3];
  store_element(DType::kBF16, bf, 1, 3.0);
  EXPECT_EQ(load_element(DType::kBF16, bf, 1), 3.0);
  int64_t i64[2];
  store_element(DType::kI64, i64, 0, 123456789.0);
  EXPECT_EQ(i64[0], 123456789);
}

}  // namespace
}  // namespace tmt
