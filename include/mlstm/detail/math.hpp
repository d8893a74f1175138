// Scalar helpers shared by the kernels.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

namespace mlstm::detail {

// log(sigmoid(x)) = -softplus(-x), computed without overflow for any finite x:
// min(x, 0) - log1p(exp(-|x|)).
template <typename T>
inline T log_sigmoid(T x) {
  return std::min(x, T(0)) - std::log1p(std::exp(-std::abs(x)));
}

// The normalizer of the mLSTM output, max(|b|, exp(-m)), b the row sum (q . n in the recurrent
// form) and m the stabilizer. Every form and every backward computes it with this function, so
// that a backward sees the branch its forward took.
template <typename T>
inline T normalizer(T sum, T stabilizer) {
  return std::max(std::abs(sum), std::exp(-stabilizer));
}

template <typename T>
inline constexpr T minus_infinity = -std::numeric_limits<T>::infinity();

}  // namespace mlstm::detail
