// Soft cap, the xLSTM-Large reference's soft_cap (as in Gemma 2): bends values smoothly into
// (-cap, cap), applied to the gate pre-activations and to the logits.
//
//   soft_cap(x) = cap * tanh(x / cap)          elementwise, cap > 0
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <string>

#include "mlstm/detail/vector_pieces.hpp"
#include "mlstm/errors.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {
namespace detail {

// x[i] = soft_cap(x[i]) for `count` values. In float, in vector registers (Eigen's tanh, within a
// few units in the last place of std::tanh): a generation step caps all 50304 logits of
// xLSTM-Large, for which std::tanh, value by value, took about 0.8% of the step (perf record of
// bench_xlstm_large's BM_Generate, 1 thread). In double, std::tanh (Eigen's tanh is not
// vectorized for double).
template <typename T>
void soft_cap_inplace(T* x, Index count, T cap) {
  evaluate_in_pieces(x, count, x,
                     [cap](const auto& values) { return cap * (values / cap).tanh(); });
}

}  // namespace detail

// Elementwise soft cap of x (any rank) at `cap` (finite, > 0): a tensor of x's shape.
template <typename X>
Tensor<ScalarOf<X>, rank_of<X>> soft_cap_forward(const X& x, double cap) {
  detail::require_argument_type<X>();
  using T = ScalarOf<X>;
  if (!(std::isfinite(cap) && cap > 0))
    throw ValueError("cap", "expected a finite number > 0, got " + std::to_string(cap));
  Tensor<T, rank_of<X>> y = x;
  detail::soft_cap_inplace(y.data(), y.size(), T(cap));
  return y;
}

}  // namespace mlstm
