// Derivatives of the non-smooth pieces shared by every backward pass: the normalizer
// max(|b|, exp(-m)), the max of two stabilizer candidates, and logsigmoid.
//
// At the points where the forward is not differentiable the backward passes follow PyTorch
// autograd (checked on torch 1.13, the version the golden data comes from), so that gradients
// agree with autograd of the reference forward everywhere, ties included:
//
//   max(a, b)   (torch.maximum)  a > b: all to a;  a == b: half to each.
//   |x|         (torch.abs)      sign(x), and 0 at x = 0.
//   max_s x_s   (torch.max(dim)) all to the first index that attains the maximum; the kernels
//                                record that index in the forward (see parallel_backward.hpp).
#pragma once

#include <algorithm>
#include <cmath>

#include "mlstm/detail/math.hpp"

namespace mlstm::detail {

// The share of d max(a, b) that goes to a (the rest goes to b).
template <typename T>
inline T max_share_of_first(T a, T b) {
  return a > b ? T(1) : (a == b ? T(0.5) : T(0));
}

// d|x| / dx with autograd's value 0 at x = 0.
template <typename T>
inline T abs_derivative(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
}

// d logsigmoid(x) / dx = sigmoid(-x) = 1 / (1 + exp(x)); exact limits 0 and 1 for large |x|.
template <typename T>
inline T log_sigmoid_derivative(T x) {
  return T(1) / (T(1) + std::exp(x));
}

// The gradients of n = max(|b|, exp(-m)) given dn: d_sum = dL/db and d_stabilizer = dL/dm along
// the lower-bound branch only (m reaches the output by other paths too; callers add those).
template <typename T>
struct NormalizerGradient {
  T d_sum;
  T d_stabilizer;
};

template <typename T>
inline NormalizerGradient<T> normalizer_backward(T sum, T stabilizer, T d_normalizer) {
  const T lower_bound = std::exp(-stabilizer);
  const T abs_share = max_share_of_first(std::abs(sum), lower_bound);
  return {d_normalizer * abs_share * abs_derivative(sum),
          -lower_bound * d_normalizer * (T(1) - abs_share)};
}

}  // namespace mlstm::detail
