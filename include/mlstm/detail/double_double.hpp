// Double-double numbers: an unevaluated sum hi + lo of two doubles, about 32 significant digits.
//
// The kernels write every log decay as a difference of prefix sums of log forget gates. Those
// sums reach thousands over long sequences or strong gates, and in plain double a difference of
// two such sums carries an error of 1e-16 times the sums, not times the difference. Held as
// double-doubles, the prefix sums are exact to 1e-32 times their size, so a difference rounded
// to double at the end is as good as if summed directly. Only O(S) values per head are kept in
// this form; per element the kernels do one double-double difference (three additions).
//
// Relies on IEEE round-to-nearest arithmetic: compiling with -ffast-math (which may reassociate
// the error terms away) degrades this to plain double precision, nothing worse.
#pragma once

#include <limits>

namespace mlstm::detail {

struct DoubleDouble {
  double hi = 0.0;
  double lo = 0.0;  // |lo| <= half an ulp of hi

  double value() const { return hi + lo; }
};

// a + b exactly, as (rounded sum, its rounding error) (Knuth's two-sum).
inline DoubleDouble two_sum(double a, double b) {
  const double sum = a + b;
  const double b_part = sum - a;
  const double error = (a - (sum - b_part)) + (b - b_part);
  return {sum, error};
}

inline DoubleDouble operator+(DoubleDouble a, DoubleDouble b) {
  const DoubleDouble sum = two_sum(a.hi, b.hi);
  return two_sum(sum.hi, sum.lo + a.lo + b.lo);
}

inline DoubleDouble operator-(DoubleDouble a) { return {-a.hi, -a.lo}; }
inline DoubleDouble operator-(DoubleDouble a, DoubleDouble b) { return a + (-b); }
inline bool operator<(DoubleDouble a, DoubleDouble b) {
  return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo);
}

inline constexpr DoubleDouble dd_plus_infinity{std::numeric_limits<double>::infinity(), 0.0};
inline constexpr DoubleDouble dd_minus_infinity{-std::numeric_limits<double>::infinity(), 0.0};

}  // namespace mlstm::detail
