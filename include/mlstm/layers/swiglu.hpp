// The gated feed-forward of xLSTM-Large, the reference's FeedForward (SwiGLU):
//
//   swiglu_forward:  x (..., E), gate_weight (F, E), up_weight (F, E), down_weight (E, F)
//                    -> y (..., E)
//     y = (silu(x W_gate^T) * (x W_up^T)) W_down^T        * elementwise, F the hidden size
//
// In the reference's fused weight mode W_gate and W_up are the two halves of one (2F, E) matrix
// (gate first); the model passes views of the halves. Biases (the model's use_bias) are added
// after each product when given.
#pragma once

#include <string>

#include "mlstm/detail/checks.hpp"
#include "mlstm/layers/activations.hpp"
#include "mlstm/layers/linear.hpp"
#include "mlstm/tensor.hpp"
#include "mlstm/threading.hpp"

namespace mlstm {
namespace detail {

// x (rows, E) -> y (rows, E); the weights in T or (for float x) bfloat16, biases may be null;
// `gate` and `up` hold the two hidden activations (rows, F), resized to them; `rounding` as in
// detail/linear_product.hpp, for each of the three products.
template <typename T, typename W>
void swiglu_rows(const T* x, Index rows, Index embedding_dim, Index hidden_dim,
                 const W* gate_weight, const T* gate_bias, const W* up_weight, const T* up_bias,
                 const W* down_weight, const T* down_bias, T* y, Tensor<T, 2>& gate,
                 Tensor<T, 2>& up, int threads, InputRounding rounding = InputRounding::none) {
  gate.resize(rows, hidden_dim);
  up.resize(rows, hidden_dim);
  linear_rows(x, rows, embedding_dim, gate_weight, hidden_dim, gate_bias, gate.data(), threads,
              rounding);
  linear_rows(x, rows, embedding_dim, up_weight, hidden_dim, up_bias, up.data(), threads, rounding);
  for (Index i = 0; i < gate.size(); ++i) gate.data()[i] = silu(gate.data()[i]) * up.data()[i];
  linear_rows(gate.data(), rows, hidden_dim, down_weight, embedding_dim, down_bias, y, threads,
              rounding);
}

}  // namespace detail

// x (..., E) -> y (..., E) without biases; the weights' shapes as above.
template <typename X, typename G, typename U, typename D>
Tensor<ScalarOf<X>, rank_of<X>> swiglu_forward(const X& x, const G& gate_weight, const U& up_weight,
                                               const D& down_weight) {
  detail::require_same_scalar<X, G, U, D>();
  constexpr int rank = rank_of<X>;
  static_assert(rank >= 1, "swiglu_forward: x needs a feature axis");
  using T = ScalarOf<X>;
  const auto gate = detail::const_view<2>(gate_weight, "gate_weight", "(F, E)");
  const auto up = detail::const_view<2>(up_weight, "up_weight", "(F, E)");
  const auto down = detail::const_view<2>(down_weight, "down_weight", "(E, F)");
  const Index E = x.dimension(rank - 1), F = gate.dimension(0);
  if (E < 1 || F < 1)
    throw ShapeError("gate_weight", "expected (F, E) with F >= 1 and E = " + std::to_string(E) +
                                        " >= 1, got " + shape_string(gate.dimensions()));
  detail::expect_shape<T, 2>(gate, {F, E}, "gate_weight", "(F, E) with E of x");
  detail::expect_shape<T, 2>(up, {F, E}, "up_weight", "(F, E) of gate_weight");
  detail::expect_shape<T, 2>(down, {E, F}, "down_weight", "(E, F) of gate_weight");
  Tensor<T, rank> y(x.dimensions());
  Tensor<T, 2> hidden_gate, hidden_up;
  detail::swiglu_rows(x.data(), detail::leading_rows(x), E, F, gate.data(),
                      static_cast<const T*>(nullptr), up.data(), static_cast<const T*>(nullptr),
                      down.data(), static_cast<const T*>(nullptr), y.data(), hidden_gate, hidden_up,
                      get_num_threads());
  return y;
}

}  // namespace mlstm
