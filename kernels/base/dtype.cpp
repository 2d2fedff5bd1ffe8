#include "kernels/base/dtype.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

namespace tmt {
namespace {

// A small binary float format: 1 sign bit, `e` exponent bits, `m` mantissa bits.
struct MiniFloat {
  int e;
  int m;
  bool has_inf;  // IEEE-like top exponent (inf/NaN) vs. e4m3fn (only all-ones is NaN)
  bool saturate;

  int bias() const { return (1 << (e - 1)) - 1; }
  uint32_t nan_code() const {
    return has_inf ? ((1u << (e + m)) - (1u << (m - 1))) : ((1u << (e + m)) - 1);
  }
  uint32_t inf_code() const { return ((1u << e) - 1) << m; }
  uint32_t max_code() const {
    // e4m3fn: exponent all ones with mantissa 110; IEEE-like: exponent all ones minus one, mantissa
    // all ones
    return has_inf ? ((((1u << e) - 2) << m) | ((1u << m) - 1)) : ((1u << (e + m)) - 2);
  }

  double decode(uint32_t bits) const {
    const bool neg = (bits >> (e + m)) & 1u;
    const int ex = static_cast<int>((bits >> m) & ((1u << e) - 1));
    const uint32_t man = bits & ((1u << m) - 1);
    double v;
    if (has_inf && ex == (1 << e) - 1) {
      v = man == 0 ? std::numeric_limits<double>::infinity()
                   : std::numeric_limits<double>::quiet_NaN();
    } else if (!has_inf && ex == (1 << e) - 1 && man == (1u << m) - 1) {
      v = std::numeric_limits<double>::quiet_NaN();
    } else if (ex == 0) {
      v = std::ldexp(static_cast<double>(man), 1 - bias() - m);
    } else {
      v = std::ldexp(1.0 + std::ldexp(static_cast<double>(man), -m), ex - bias());
    }
    return neg ? -v : v;
  }

  uint32_t encode(double x) const {
    const uint32_t sign = std::signbit(x) ? (1u << (e + m)) : 0u;
    if (std::isnan(x)) return sign | nan_code();
    const double a = std::fabs(x);
    const double max_finite = decode(max_code());
    if (std::isinf(a)) return sign | (has_inf ? inf_code() : max_code());
    // The spacing of representable values around `a`: 2^(exponent - m), clamped at the subnormals.
    int ex2 = 0;
    std::frexp(a, &ex2);  // a = f * 2^ex2, f in [0.5, 1)
    const int unbiased = std::max(ex2 - 1, 1 - bias());
    const double quantum = std::ldexp(1.0, unbiased - m);
    const double q = std::nearbyint(a / quantum) * quantum;  // ties to even (default rounding mode)
    if (q > max_finite) {
      if (saturate || !has_inf) return sign | max_code();
      return sign | inf_code();
    }
    if (q == 0.0) return sign;
    std::frexp(q, &ex2);
    const int qe = ex2 - 1;
    if (qe < 1 - bias()) {  // subnormal
      return sign | static_cast<uint32_t>(std::ldexp(q, bias() - 1 + m));
    }
    const auto man = static_cast<uint32_t>(std::ldexp(q, -qe) * (1u << m)) - (1u << m);
    return sign | (static_cast<uint32_t>(qe + bias()) << m) | man;
  }
};

constexpr MiniFloat kF16Format{5, 10, true, false};
constexpr MiniFloat kE4M3Format{4, 3, false, true};
constexpr MiniFloat kE5M2Format{5, 2, true, false};

}  // namespace

size_t dtype_size(DType t) {
  switch (t) {
    case DType::kF64:
      return 8;
    case DType::kF32:
      return 4;
    case DType::kBF16:
      return 2;
    case DType::kF16:
      return 2;
    case DType::kF8E4M3:
      return 1;
    case DType::kF8E5M2:
      return 1;
    case DType::kI32:
      return 4;
    case DType::kI64:
      return 8;
  }
  return 0;
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::kF64:
      return "f64";
    case DType::kF32:
      return "f32";
    case DType::kBF16:
      return "bf16";
    case DType::kF16:
      return "f16";
    case DType::kF8E4M3:
      return "f8e4m3";
    case DType::kF8E5M2:
      return "f8e5m2";
    case DType::kI32:
      return "i32";
    case DType::kI64:
      return "i64";
  }
  return "?";
}

std::optional<DType> parse_dtype(std::string_view name) {
  for (DType t : {DType::kF64, DType::kF32, DType::kBF16, DType::kF16, DType::kF8E4M3,
                  DType::kF8E5M2, DType::kI32, DType::kI64}) {
    if (dtype_name(t) == name) return t;
  }
  return std::nullopt;
}

bool is_floating(DType t) { return t != DType::kI32 && t != DType::kI64; }

float bf16_to_float(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

uint16_t float_to_bf16(float x) {
  uint32_t u = std::bit_cast<uint32_t>(x);
  if (std::isnan(x)) return static_cast<uint16_t>((u >> 16) | 0x40u);  // keep it a quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return static_cast<uint16_t>(u >> 16);
}

float f16_to_float(uint16_t bits) { return static_cast<float>(kF16Format.decode(bits)); }
uint16_t float_to_f16(float x) { return static_cast<uint16_t>(kF16Format.encode(x)); }
float f8e4m3_to_float(uint8_t bits) { return static_cast<float>(kE4M3Format.decode(bits)); }
uint8_t float_to_f8e4m3(float x) { return static_cast<uint8_t>(kE4M3Format.encode(x)); }
float f8e5m2_to_float(uint8_t bits) { return static_cast<float>(kE5M2Format.decode(bits)); }
uint8_t float_to_f8e5m2(float x) { return static_cast<uint8_t>(kE5M2Format.encode(x)); }

double load_element(DType t, const void* data, size_t i) {
  switch (t) {
    case DType::kF64:
      return static_cast<const double*>(data)[i];
    case DType::kF32:
      return static_cast<const float*>(data)[i];
    case DType::kBF16:
      return bf16_to_float(static_cast<const uint16_t*>(data)[i]);
    case DType::kF16:
      return f16_to_float(static_cast<const uint16_t*>(data)[i]);
    case DType::kF8E4M3:
      return f8e4m3_to_float(static_cast<const uint8_t*>(data)[i]);
    case DType::kF8E5M2:
      return f8e5m2_to_float(static_cast<const uint8_t*>(data)[i]);
    case DType::kI32:
      return static_cast<const int32_t*>(data)[i];
    case DType::kI64:
      return static_cast<double>(static_cast<const int64_t*>(data)[i]);
  }
  return 0.0;
}

void store_element(DType t, void* data, size_t i, double value) {
  const auto f = static_cast<float>(value);
  switch (t) {
    case DType::kF64:
      static_cast<double*>(data)[i] = value;
      return;
    case DType::kF32:
      static_cast<float*>(data)[i] = f;
      return;
    case DType::kBF16:
      static_cast<uint16_t*>(data)[i] = float_to_bf16(f);
      return;
    case DType::kF16:
      static_cast<uint16_t*>(data)[i] = float_to_f16(f);
      return;
    case DType::kF8E4M3:
      static_cast<uint8_t*>(data)[i] = float_to_f8e4m3(f);
      return;
    case DType::kF8E5M2:
      static_cast<uint8_t*>(data)[i] = float_to_f8e5m2(f);
      return;
    case DType::kI32:
      static_cast<int32_t*>(data)[i] = static_cast<int32_t>(value);
      return;
    case DType::kI64:
      static_cast<int64_t*>(data)[i] = static_cast<int64_t>(value);
      return;
  }
}

}  // namespace tmt
