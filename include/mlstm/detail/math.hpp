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

template <typename T>
inline constexpr T minus_infinity = -std::numeric_limits<T>::infinity();

}  // namespace mlstm::detail
