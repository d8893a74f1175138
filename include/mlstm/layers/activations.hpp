// Activations of the model: SiLU, the reference's nn.SiLU, applied after the causal
// convolution and to the output-gate branch.
//
//   silu(x) = x * sigmoid(x) = x / (1 + exp(-x))
//   silu'(x) = sigmoid(x) (1 + x (1 - sigmoid(x)))      (the backward keeps the input x)
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

#include "mlstm/detail/checks.hpp"
#include "mlstm/detail/thread_pool.hpp"
#include "mlstm/detail/vector_pieces.hpp"
#include "mlstm/tensor.hpp"

namespace mlstm {
namespace detail {

template <typename T>
inline T silu(T x) {
  // For x -> -inf, exp(-x) overflows to inf and the quotient is -0: the limit, no NaN.
  return x / (T(1) + std::exp(-x));
}

// y[i] = silu(x[i]) for n values (y may be x), in vector registers (Eigen's exp), every value
// the same wherever it lies (vector_pieces.hpp). Below -log(largest T), where silu's exp(-x)
// overflows to inf and the quotient is -0, the result is that -0 too (Eigen's exp saturates at a
// finite value instead).
template <typename T>
void silu_values(const T* x, Index n, T* y) {
  const T overflow = -std::log(std::numeric_limits<T>::max());
  evaluate_in_pieces(
      x, n, y, [](const auto& values) { return values / (T(1) + (-values).exp()); },
      [overflow](T value, T result) { return value < overflow ? value * T(0) : result; });
}

// y (rows, dim) = silu(x (rows, dim)), on up to `threads` threads; y may be x.
template <typename T>
void silu_rows(const T* x, Index rows, Index dim, T* y, int threads) {
  parallel_rows(rows, 16, threads, 32.0 * static_cast<double>(dim), [&](Index begin, Index end) {
    silu_values(x + begin * dim, (end - begin) * dim, y + begin * dim);
  });
}

// d silu / dx at x; for x -> -inf, sigmoid -> 0 and the product -> 0.
template <typename T>
inline T silu_derivative(T x) {
  const T sigmoid = T(1) / (T(1) + std::exp(-x));
  return sigmoid * (T(1) + x * (T(1) - sigmoid));
}

// sigmoid(x) of an array of values, evaluated in vector registers (Eigen's exp): what the
// backward passes need of a block of values, silu(x) = x sigmoid(x) and silu'(x) above. Where
// exp(-x) saturates (x below about -88 in float) the sigmoid is a tiny positive number rather
// than 0, which no gradient sees.
template <typename Derived>
Eigen::Array<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>
sigmoid_values(const Eigen::ArrayBase<Derived>& x) {
  using T = typename Derived::Scalar;
  return (T(1) + (-x).exp()).inverse();
}

// dy (rows, dim) *= silu'(x (rows, dim)) in place, on up to `threads` threads, in blocks of 32
// rows (an exponential and a few products a value).
template <typename T>
void silu_backward_rows(const T* x, Index rows, Index dim, T* dy, int threads) {
  using Rows = Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  parallel_rows(rows, 32, threads, 40.0 * static_cast<double>(dim), [&](Index begin, Index end) {
    const Eigen::Map<const Rows> input(x + begin * dim, end - begin, dim);
    const Rows sigmoid = sigmoid_values(input);
    Eigen::Map<Rows>(dy + begin * dim, end - begin, dim) *=
        sigmoid * (T(1) + input * (T(1) - sigmoid));
  });
}

}  // namespace detail

// Elementwise SiLU of x (any rank): returns a tensor of x's shape.
template <typename X>
Tensor<ScalarOf<X>, rank_of<X>> silu_forward(const X& x) {
  detail::require_argument_type<X>();
  Tensor<ScalarOf<X>, rank_of<X>> y(x.dimensions());
  detail::silu_values(x.data(), x.size(), y.data());
  return y;
}

// dx = dy * silu'(x) for the forward's input x and dy of x's shape.
template <typename X, typename DY>
Tensor<ScalarOf<X>, detail::traits_of<X>::rank> silu_backward(const X& x, const DY& dy) {
  detail::require_same_scalar<X, DY>();
  constexpr int rank = detail::traits_of<X>::rank;
  static_assert(detail::traits_of<DY>::rank == rank, "silu_backward: dy has x's rank");
  for (int axis = 0; axis < rank; ++axis) {
    if (dy.dimension(axis) != x.dimension(axis)) {
      throw ShapeError("dy", "expected x's shape " + shape_string(x.dimensions()) + ", got " +
                                 shape_string(dy.dimensions()));
    }
  }
  Tensor<ScalarOf<X>, rank> dx(x.dimensions());
  for (Index i = 0; i < x.size(); ++i)
    dx.data()[i] = dy.data()[i] * detail::silu_derivative(x.data()[i]);
  return dx;
}

}  // namespace mlstm
