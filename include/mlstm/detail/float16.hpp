// The 16-bit floating-point storage formats of checkpoints: IEEE binary16 ("half", F16) and
// bfloat16 (BF16), converted from their bit patterns to float and back.
//
// Both are binary formats with 1 sign bit, E exponent bits (bias 2^(E-1) - 1) and M stored
// mantissa bits: half has E = 5, M = 10; bfloat16 has E = 8, M = 7 (the top half of a float).
// Every half and bfloat16 value is exactly a float, so widening is exact. Narrowing rounds to
// nearest, ties to even, from double, so that a double is rounded once (through float it would
// be rounded twice, which can land on the wrong side of a tie).
#pragma once

#include <algorithm>
#include <cstdint>

#include <Eigen/Core>

namespace mlstm::detail {

template <int ExponentBits, int MantissaBits>
struct SmallFloatLayout {
  static constexpr int exponent_bits = ExponentBits;
  static constexpr int mantissa_bits = MantissaBits;
  static constexpr int bias = (1 << (ExponentBits - 1)) - 1;
  static constexpr int min_normal_exponent = 1 - bias;
  static constexpr std::uint32_t mantissa_mask = (1u << MantissaBits) - 1;
  static constexpr std::uint32_t exponent_mask = (1u << ExponentBits) - 1;
  static constexpr std::uint32_t infinity_bits = exponent_mask << MantissaBits;
  static constexpr std::uint32_t sign_bit = 1u << (ExponentBits + MantissaBits);
};

using HalfLayout = SmallFloatLayout<5, 10>;
using BFloat16Layout = SmallFloatLayout<8, 7>;

// The float whose value is the small float with bit pattern `bits` (exact; a NaN keeps its sign
// and payload).
template <typename Layout>
float small_float_to_float(std::uint16_t bits) {
  constexpr int float_mantissa_bits = 23;
  constexpr int float_bias = 127;
  constexpr int shift = float_mantissa_bits - Layout::mantissa_bits;
  const std::uint32_t sign = (bits & Layout::sign_bit) != 0 ? 0x80000000u : 0u;
  const std::uint32_t exponent = (bits >> Layout::mantissa_bits) & Layout::exponent_mask;
  const std::uint32_t mantissa = bits & Layout::mantissa_mask;
  if (exponent == Layout::exponent_mask) {  // infinity or NaN
    return Eigen::numext::bit_cast<float>(sign | 0x7f800000u | (mantissa << shift));
  }
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^(min_normal_exponent - M). The power of two is a float
    // (normal for half, subnormal for bfloat16) and the product is exact.
    constexpr int scale_exponent = Layout::min_normal_exponent - Layout::mantissa_bits;
    constexpr std::uint32_t scale_bits = [] {  // if constexpr: no shift past 31 for either layout
      if constexpr (scale_exponent >= 1 - float_bias) {
        return static_cast<std::uint32_t>(scale_exponent + float_bias) << float_mantissa_bits;
      } else {
        return 1u << (scale_exponent + float_bias - 1 + float_mantissa_bits);
      }
    }();
    const float magnitude =
        static_cast<float>(mantissa) * Eigen::numext::bit_cast<float>(scale_bits);
    return Eigen::numext::bit_cast<float>(sign | Eigen::numext::bit_cast<std::uint32_t>(magnitude));
  }
  const std::uint32_t float_exponent = exponent - Layout::bias + float_bias;
  return Eigen::numext::bit_cast<float>(sign | (float_exponent << float_mantissa_bits) |
                                        (mantissa << shift));
}

// The bit pattern of `value` rounded to the small float format, to nearest with ties to even.
// Values at or beyond the rounding threshold of the largest finite value become infinity; a NaN
// stays a NaN of the same sign, quiet, keeping the top bits of its payload.
template <typename Layout>
std::uint16_t small_float_from_double(double value) {
  constexpr int double_mantissa_bits = 52;
  constexpr std::uint64_t double_exponent_field = 0x7ff0000000000000ull;
  const std::uint64_t bits = Eigen::numext::bit_cast<std::uint64_t>(value);
  const std::uint32_t sign = (bits >> 63) != 0 ? Layout::sign_bit : 0u;
  const std::uint64_t magnitude = bits & 0x7fffffffffffffffull;
  if (magnitude > double_exponent_field) {  // NaN
    const std::uint32_t payload = static_cast<std::uint32_t>(
        (magnitude >> (double_mantissa_bits - Layout::mantissa_bits)) & Layout::mantissa_mask);
    const std::uint32_t quiet = 1u << (Layout::mantissa_bits - 1);
    return static_cast<std::uint16_t>(sign | Layout::infinity_bits | quiet | payload);
  }
  const int biased_exponent = static_cast<int>(magnitude >> double_mantissa_bits);
  // Zeros and double subnormals are far below half the smallest subnormal of either format.
  if (biased_exponent == 0) return static_cast<std::uint16_t>(sign);
  const int exponent = biased_exponent - 1023;
  if (exponent > Layout::bias) return static_cast<std::uint16_t>(sign | Layout::infinity_bits);

  // value = significand * 2^(exponent - 52) with a 53-bit significand. In the target format its
  // quantum is 2^(max(exponent, min_normal_exponent) - M); drop the bits below it, rounding.
  const std::uint64_t significand =
      (magnitude & ((1ull << double_mantissa_bits) - 1)) | (1ull << double_mantissa_bits);
  const int kept_exponent = std::max(exponent, Layout::min_normal_exponent);
  const int shift = double_mantissa_bits - Layout::mantissa_bits + (kept_exponent - exponent);
  if (shift > double_mantissa_bits + 1) return static_cast<std::uint16_t>(sign);  // < half quantum
  std::uint64_t quanta = significand >> shift;
  const std::uint64_t remainder = significand & ((1ull << shift) - 1);
  const std::uint64_t halfway = 1ull << (shift - 1);
  if (remainder > halfway || (remainder == halfway && (quanta & 1) != 0)) ++quanta;
  // `quanta` includes the implicit leading bit of a normal number, so adding it to the exponent
  // field below min_normal_exponent's lands on the right biased exponent, and a rounding carry
  // (quanta == 2^(M+1)) moves to the next binade: from the largest one, to infinity's pattern.
  const std::uint64_t encoded =
      (static_cast<std::uint64_t>(kept_exponent - Layout::min_normal_exponent)
       << Layout::mantissa_bits) +
      quanta;
  return static_cast<std::uint16_t>(sign | encoded);
}

}  // namespace mlstm::detail
