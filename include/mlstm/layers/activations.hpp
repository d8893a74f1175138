// Activations of the model: SiLU, the reference's nn.SiLU, applied after the causal
// convolution and to the output-gate branch.
//
//   silu(x) = x * sigmoid(x) = x / (1 + exp(-x))
#pragma once

#include <cmath>

#include "mlstm/tensor.hpp"

namespace mlstm {
namespace detail {

template <typename T>
inline T silu(T x) {
  // For x -> -inf, exp(-x) overflows to inf and the quotient is -0: the limit, no NaN.
  return x / (T(1) + std::exp(-x));
}

}  // namespace detail

// Elementwise SiLU of x (any rank): returns a tensor of x's shape.
template <typename X>
Tensor<ScalarOf<X>, rank_of<X>> silu_forward(const X& x) {
  detail::require_argument_type<X>();
  Tensor<ScalarOf<X>, rank_of<X>> y(x.dimensions());
  for (Index i = 0; i < x.size(); ++i) y.data()[i] = detail::silu(x.data()[i]);
  return y;
}

}  // namespace mlstm
