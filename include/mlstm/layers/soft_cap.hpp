// Soft cap, the xLSTM-Large reference's soft_cap (as in Gemma 2): bends values smoothly into
// (-cap, cap), applied to the gate pre-activations and to the logits.
//
//   soft_cap(x) = cap * tanh(x / cap)          elementwise, cap > 0
#pragma once

#include <cmath>
#include <string>

#include "mlstm/errors.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {
namespace detail {

template <typename T>
inline T soft_cap(T x, T cap) {
  return cap * std::tanh(x / cap);
}

template <typename T>
void soft_cap_inplace(T* x, Index count, T cap) {
  for (Index i = 0; i < count; ++i) x[i] = soft_cap(x[i], cap);
}

}  // namespace detail

// Elementwise soft cap of x (any rank) at `cap` (finite, > 0): a tensor of x's shape.
template <typename X>
Tensor<ScalarOf<X>, rank_of<X>> soft_cap_forward(const X& x, double cap) {
  detail::require_argument_type<X>();
  using T = ScalarOf<X>;
  if (!(std::isfinite(cap) && cap > 0))
    throw ValueError("cap", "expected a finite number > 0, got " + std::to_string(cap));
  Tensor<T, rank_of<X>> y(x.dimensions());
  for (Index i = 0; i < x.size(); ++i) y.data()[i] = detail::soft_cap(x.data()[i], T(cap));
  return y;
}

}  // namespace mlstm
