// Element types a Tensor can hold, their sizes and names, and host-side conversions.
//
// The low-precision formats follow their usual definitions:
//   bf16      1 sign, 8 exponent, 7 mantissa bits (the top half of an fp32)
//   f16       IEEE binary16: 1, 5, 10; bias 15; infinities
//   f8 e4m3   OCP "e4m3fn": 1, 4, 3; bias 7; no infinities, 0x7f/0xff are NaN, max 448
//   f8 e5m2   OCP e5m2: 1, 5, 2; bias 15; IEEE-like with infinities, max 57344
// Conversions from float round to nearest, ties to even. e4m3 saturates at ±448 (it has no
// infinity); the other formats overflow to ±inf. NaN stays NaN.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tmt {

enum class DType : uint8_t { kF64, kF32, kBF16, kF16, kF8E4M3, kF8E5M2, kI32, kI64 };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);  // "f32", "bf16", "f8e4m3", ...
std::optional<DType> parse_dtype(std::string_view name);
bool is_floating(DType t);

// Host conversions of one element; `bits` holds the encoded value in its low bits.
float bf16_to_float(uint16_t bits);
uint16_t float_to_bf16(float x);
float f16_to_float(uint16_t bits);
uint16_t float_to_f16(float x);
float f8e4m3_to_float(uint8_t bits);
uint8_t float_to_f8e4m3(float x);
float f8e5m2_to_float(uint8_t bits);
uint8_t float_to_f8e5m2(float x);

// Reads element `i` of a buffer of type `t` as double / writes it from double (through the
// format's rounding). For tests, checkpoints and casts on the host; not for hot loops.
double load_element(DType t, const void* data, size_t i);
void store_element(DType t, void* data, size_t i, double value);

}  // namespace tmt
