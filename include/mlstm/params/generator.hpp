// mlstm::Generator: the random source of the init functions, reproducible from a seed on every
// compiler and standard library (std::normal_distribution is not: its output is left to the
// implementation).
//
//   mlstm::Generator gen(42);
//   std::uint64_t bits = gen.next_u64();
//   double u = gen.uniform();     // [0, 1)
//   double z = gen.normal();      // standard normal
//
// The algorithm is part of the interface (changing it changes every initialized model):
//
//   seeding    four successive outputs of splitmix64 started at `seed` fill the state
//              (splitmix64: s += 0x9E3779B97F4A7C15; z = s; z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9;
//              z = (z ^ z >> 27) * 0x94D049BB133111EB; output z ^ z >> 31)
//   next_u64   xoshiro256** (Blackman and Vigna, 2018) on the 256-bit state
//   uniform    (next_u64() >> 11) * 2^-53: a multiple of 2^-53 in [0, 1)
//   normal     Box-Muller on two draws: u1 = ((next_u64() >> 11) + 1) * 2^-53 in (0, 1],
//              u2 = (next_u64() >> 11) * 2^-53, r = sqrt(-2 log u1), a = 2 pi u2;
//              returns r cos a, and r sin a on the next call (the second value is cached;
//              next_u64 and uniform do not touch the cache)
//
// Guarantees. next_u64 and uniform are integer arithmetic and one exact scaling: bit for bit the
// same everywhere. normal also uses std::sqrt (correctly rounded by IEEE 754) and std::log,
// std::cos, std::sin, which C++ does not pin to the last bit: across math libraries normals agree
// to a few units in the last place of a double, so float parameters drawn from them almost
// always agree exactly and double parameters agree to about 1e-15 relative. The tests check the
// integer stream bit for bit and the normals to a tolerance, against an independent port.
//
// Generator also models UniformRandomBitGenerator, so it works with std::shuffle and the like.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>

namespace mlstm {

// The complete state of a Generator: restoring it continues the stream exactly.
struct GeneratorState {
  std::array<std::uint64_t, 4> words{};
  bool has_cached_normal = false;
  double cached_normal = 0.0;
};

class Generator {
 public:
  using result_type = std::uint64_t;

  explicit Generator(std::uint64_t seed) {
    std::uint64_t sequence = seed;
    for (std::uint64_t& word : state_.words) word = splitmix64(sequence);
  }

  explicit Generator(const GeneratorState& state) : state_(state) {}

  const GeneratorState& state() const { return state_; }

  std::uint64_t next_u64() {
    auto& s = state_.words;
    const std::uint64_t result = rotl(s[1] * 5, 7) * 9;
    const std::uint64_t shifted = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= shifted;
    s[3] = rotl(s[3], 45);
    return result;
  }

  // Uniform in [0, 1) on the grid of multiples of 2^-53.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  // Standard normal (Box-Muller, see above).
  double normal() {
    if (state_.has_cached_normal) {
      state_.has_cached_normal = false;
      return state_.cached_normal;
    }
    const double u1 = static_cast<double>((next_u64() >> 11) + 1) * 0x1.0p-53;  // (0, 1]
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double angle = two_pi * u2;
    state_.cached_normal = radius * std::sin(angle);
    state_.has_cached_normal = true;
    return radius * std::cos(angle);
  }

  // UniformRandomBitGenerator.
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<result_type>::max(); }
  result_type operator()() { return next_u64(); }

  // One step of splitmix64 (see above): advances `sequence` and returns its output. Also a
  // counter-based source: the outputs for sequence = 0, 1, 2, ... (each a fresh copy) look
  // independent and can be drawn in any order, on any thread.
  static std::uint64_t splitmix64(std::uint64_t& sequence) {
    sequence += 0x9E3779B97F4A7C15ull;
    std::uint64_t z = sequence;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

 private:
  static constexpr double two_pi = 6.283185307179586;  // 2 * (pi rounded to double), exactly

  static constexpr std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

  GeneratorState state_;
};

}  // namespace mlstm
